package pidtable

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// ErrNewerRecord is returned when a record carries fields this version does
// not know (written by a newer ssi): reading it is fine, but rewriting it would
// drop those fields, so writes refuse it.
var ErrNewerRecord = errors.New("pidtable: record has fields this ssi version does not know (written by a newer version?); upgrade this agent; nothing was changed")

// maxRecord bounds a record's size (etcd's own request limit is 1.5 MiB).
const maxRecord = 1 << 20

func decodeProcs(kvs []*mvccpb.KeyValue) ([]Proc, error) {
	procs := make([]Proc, 0, len(kvs))
	for _, kv := range kvs {
		p, err := DecodeProc(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("pidtable: decode %s: %w", kv.Key, err)
		}
		procs = append(procs, p)
	}
	return procs, nil
}

// DecodeProc decodes a process record for reading: fields it does not know
// are ignored (forward compatible), but the record must be one JSON object of
// at most 1 MiB with a gpid and an owner.
func DecodeProc(b []byte) (Proc, error) {
	var p Proc
	if err := decode(b, &p, false); err != nil {
		return Proc{}, err
	}
	return p, p.check()
}

// decodeProcForUpdate is DecodeProc for a read-modify-write: a record with
// unknown fields fails with ErrNewerRecord.
func decodeProcForUpdate(b []byte) (Proc, error) {
	var p Proc
	if err := decode(b, &p, true); err != nil {
		return Proc{}, err
	}
	return p, p.check()
}

func (p *Proc) check() error {
	if p.GPID == 0 || p.Node == "" {
		return fmt.Errorf("pidtable: record without gpid or node")
	}
	return nil
}

// decodeStrict decodes a small record, refusing unknown fields.
func decodeStrict(b []byte, v any) error { return decode(b, v, true) }

func decode(b []byte, v any, strict bool) error {
	if len(b) > maxRecord {
		return fmt.Errorf("pidtable: record of %d bytes: at most %d", len(b), maxRecord)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		if strict && isUnknownField(err) {
			return fmt.Errorf("%w (%v)", ErrNewerRecord, err)
		}
		return err
	}
	if dec.More() {
		return errors.New("pidtable: trailing data after the record")
	}
	return nil
}

// isUnknownField: encoding/json has no typed error for DisallowUnknownFields;
// its message is the documented contract ("json: unknown field").
func isUnknownField(err error) bool {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	return !errors.As(err, &se) && !errors.As(err, &te) && bytes.HasPrefix([]byte(err.Error()), []byte("json: unknown field"))
}
