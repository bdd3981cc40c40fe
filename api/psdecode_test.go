package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// randomRow is a row with fields drawn at random, all of ProcInfo's kinds
// of value among them (strings that need escapes, unicode, nulls left out
// or in by omitempty).
func randomRow(r *rand.Rand) ProcInfo {
	str := func() string { // plain mostly, as real rows are: they take the fast path
		if r.IntN(40) == 0 {
			return []string{"héllo", "tab\there", `q"uote`, `back\slash`, "\u2028", "\x01", "<&>"}[r.IntN(7)]
		}
		return []string{"", "a", "node-7", "sleep", "/home/a b", "3600"}[r.IntN(6)]
	}
	tm := func() time.Time {
		if r.IntN(3) == 0 {
			return time.Time{}
		}
		return time.Unix(r.Int64N(1<<33), r.Int64N(1e9)).In(time.FixedZone("", 3600*(r.IntN(5)-2)))
	}
	p := ProcInfo{Proc: pidtable.Proc{
		GPID: r.Uint64(), Node: str(), Epoch: r.Uint64N(5), State: pidtable.State(str()),
		PID: r.IntN(1 << 22), InitPID: r.IntN(3), User: str(), UID: r.IntN(70000) - 1, GID: r.IntN(3),
		Workdir: str(), CPUs: r.Float64() * float64(r.IntN(3)), Memory: r.Int64N(1 << 40),
		Created: tm(), Started: tm(), Ended: tm(), Error: str(), MigrationError: str(), MigrationFailed: tm(),
		Checkpoint: str(), RestoredFrom: str(), CheckpointEvery: time.Duration(r.Int64N(1 << 40)),
		FailedOver: r.IntN(3), FailedOverFrom: str(), Pinned: r.IntN(2) == 0, Reconnects: r.IntN(2) == 0, TTY: r.IntN(2) == 0,
		Service: str(), ServiceHash: str(), Arrived: tm(), Archived: tm(),
	}, NodeReady: r.IntN(2) == 0}
	if r.IntN(4) > 0 {
		p.Argv = []string{}
	}
	for range r.IntN(4) {
		p.Argv = append(p.Argv, str())
	}
	if r.IntN(3) == 0 {
		code := r.IntN(256) - 1
		p.ExitCode = &code
	}
	if r.IntN(5) == 0 {
		p.Migration = &pidtable.Migration{ID: str(), Target: str(), Phase: str(), Started: tm()}
	}
	if r.IntN(5) == 0 {
		p.Constraints = map[string]string{"zone": str()}
	}
	if r.IntN(2) == 0 {
		p.Stats = &pidtable.ProcStats{CPU: r.Float64() * 400, RSS: r.Int64N(1 << 36), Stat: str(), Procs: r.IntN(9), Demand: r.Float64()}
	}
	return p
}

// sameAsJSON fails t unless decodeRow gives for b what json.Unmarshal does:
// the same value, or an error both.
func sameAsJSON(t *testing.T, b []byte) {
	t.Helper()
	var want, got ProcInfo
	werr := json.Unmarshal(b, &want)
	gerr := decodeRow(b, &got)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%s:\ndecodeRow error %v, json.Unmarshal's %v", b, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\ndecodeRow %+v\njson.Unmarshal %+v", b, got, want)
	}
}

// rowEdges are rows the fast path must take or leave as encoding/json
// would read them.
var rowEdges = []string{
	`{}`, ` { } `, `{"gpid":1}`, `{"gpid":1,"node":"n"}`, `{ "gpid" : 1 , "argv" : [ "a" , "b" ] }`,
	`{"argv":[]}`, `{"argv":null}`, `{"node":null}`, `{"stats":null}`, `{"exit_code":null}`,
	`{"gpid":1,"gpid":2}`, `{"GPID":3}`, `{"Node":"x","node":"y"}`, `{"gpid":-1}`, `{"gpid":1.0}`,
	`{"gpid":1e3}`, `{"pid":01}`, `{"pid":-0}`, `{"pid":9223372036854775808}`, `{"gpid":18446744073709551616}`,
	`{"cpus":1e400}`, `{"cpus":-0.5e-3}`, `{"cpus":.5}`, `{"cpus":1.}`, `{"cpus":+1}`, `{"memory":0x10}`,
	`{"pinned":true,"tty":false}`, `{"pinned":tru}`, `{"pinned":truex}`, `{"pinned":1}`, `{"node":"a\"b"}`,
	`{"node":"a\u0041"}`, `{"node":"é"}`, "{\"node\":\"a\x01\"}", `{"created":"2024-01-02T03:04:05Z"}`,
	`{"created":"2024-01-02T03:04:05.123456789+02:00"}`, `{"created":"yesterday"}`, `{"created":"2024-01-02T03:04:05\u005a"}`,
	`{"stats":{"cpu":1.5,"rss":3,"stat":"S","procs":1,"demand":0}}`, `{"stats":{"cpu":1},"stats":{"rss":2}}`,
	`{"exit_code":1,"exit_code":2}`, `{"stats":{"CPU":1}}`, `{"stats":{"other":1}}`, `{"other":1}`,
	`{"migration":{"id":"m","target":"t","phase":"p","started":"2024-01-02T03:04:05Z"}}`, `{"constraints":{"a":"b"}}`,
	`{"checkpoint_every":60000000000}`, `{"checkpoint_every":"1m"}`, `{"node_ready":true}`, `{"gpid":1,}`,
	`{"gpid":1 "node":"n"}`, `{"gpid" 1}`, `{gpid:1}`, `{"gpid":1}x`, `{"gpid":1`, `[]`, `1`, `"s"`, `null`, ``,
	`{"argv":["a",]}`, `{"argv":["a" "b"]}`, `{"argv":[1]}`, `{"state":"running","user":"root","workdir":"/"}`,
}

func TestDecodeRowAsJSON(t *testing.T) {
	for _, s := range rowEdges {
		sameAsJSON(t, []byte(s))
	}
	r := rand.New(rand.NewPCG(7, 11))
	for range 20_000 {
		b, err := json.Marshal(randomRow(r))
		if err != nil {
			t.Fatal(err)
		}
		sameAsJSON(t, b)
	}
}

func FuzzDecodeRow(f *testing.F) {
	for _, s := range rowEdges {
		f.Add([]byte(s))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		b, _ := json.Marshal(randomRow(r))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameAsJSON(t, b) })
}

// TestDecodeRowKeys: every JSON key of ProcInfo is decoded by the fast path
// or named here as left to encoding/json, so that a field added to
// pidtable.Proc is not silently decoded the slow way (add it to
// rowParser.row and fastKeys).
func TestDecodeRowKeys(t *testing.T) {
	slow := []string{"migration", "constraints"}
	var keys []string
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for f := range rt.Fields() {
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			keys = append(keys, name)
		}
	}
	walk(reflect.TypeFor[ProcInfo]())
	for _, k := range keys {
		if !slices.Contains(fastKeys, k) && !slices.Contains(slow, k) {
			t.Errorf("ProcInfo's key %q: neither decoded by rowParser.row nor listed as slow", k)
		}
	}
	for _, k := range fastKeys {
		if !slices.Contains(keys, k) {
			t.Errorf("fastKeys has %q, which ProcInfo has not", k)
		}
		b := []byte(`{"` + k + `":{"x":[1]}}`) // a value of no field's type
		var p ProcInfo
		if (&rowParser{b: b}).row(&p) {
			t.Errorf("key %q: the fast path took a value of the wrong type", k)
		}
	}
}

// TestRowReader: rowReader reads the rows of any JSON array json.Decoder
// reads, whatever the white space and however the reads are cut, and
// refuses what it refuses.
func TestRowReader(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var rows []ProcInfo
	for range 300 {
		rows = append(rows, randomRow(r))
	}
	compact, _ := json.Marshal(rows)
	indented, _ := json.MarshalIndent(rows, " ", "\t")
	agent := psBody(nil, 500) // as the agent writes it: one row a line
	read := func(body []byte, oneByte bool) ([]ProcInfo, error) {
		var rd = bytes.NewReader(body)
		a := &rowReader{r: rd}
		if oneByte {
			a.r = iotest.OneByteReader(rd)
		}
		out := []ProcInfo{}
		for {
			var p ProcInfo
			ok, err := a.next(&p)
			if err != nil || !ok {
				return out, err
			}
			out = append(out, p)
		}
	}
	for _, body := range [][]byte{compact, indented, agent, []byte("[]"), []byte(" [ ] "), []byte("[{}]"), []byte("\n[\n{ }\n,\n{\"gpid\":2}\n]\n")} {
		var want []ProcInfo
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatal(err)
		}
		for _, oneByte := range []bool{false, true} {
			got, err := read(body, oneByte)
			if err != nil {
				t.Fatalf("%.60s (one byte a read: %v): %v", body, oneByte, err)
			}
			if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("%.60s (one byte a read: %v): %d rows differ from json.Unmarshal's %d", body, oneByte, len(got), len(want))
			}
		}
	}
	for _, bad := range []string{"", "{}", "[", "[{}", "[{},", "[{},]", "[,{}]", "[{}{}]", "[1]", `["s"]`, "[{]", `[{"gpid":"1"}]`, `[{"node":"a}]`} {
		if _, err := read([]byte(bad), false); err == nil {
			t.Errorf("%q: no error", bad)
		}
		if _, err := read([]byte(bad), true); err == nil {
			t.Errorf("%q, one byte a read: no error", bad)
		}
	}
	// A row bigger than a read's buffer.
	big := ProcInfo{Proc: pidtable.Proc{GPID: 1, Node: "n", Argv: []string{strings.Repeat("x", 300<<10)}}}
	body, _ := json.Marshal([]ProcInfo{big, big})
	got, err := read(body, false)
	if err != nil || len(got) != 2 || !reflect.DeepEqual(got[1], big) {
		t.Fatalf("big rows: %d, %v", len(got), err)
	}
}

// TestPSStreamEnds: PSStream over an agent's answer passes the rows on and
// reads the trailer: the gpid to go on after, or why a listing broke off
// (its array left open), with the rows before it passed on.
func TestPSStreamEnds(t *testing.T) {
	row := func(gpid int) string {
		return `{"gpid":` + strconv.Itoa(gpid) + `,"node":"n","state":"running","user":"u","argv":["a"],"created":"2024-01-02T03:04:05Z","node_ready":false}` + "\n"
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", HeaderNext+", "+HeaderListError)
		io.WriteString(w, "["+row(1)+","+row(2))
		w.(http.Flusher).Flush()
		if r.URL.Query().Get("exited") != "" { // stands for a listing that breaks off
			w.Header().Set(HeaderListError, "node n: etcd went away")
			return
		}
		io.WriteString(w, "]\n")
		w.Header().Set(HeaderNext, "2")
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, "u", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	res, err := c.PSStream(context.Background(), PSQuery{}, func(p ProcInfo) error { got = append(got, p.GPID); return nil })
	if err != nil || res.Rows != 2 || res.Next != 2 || !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("whole listing: rows %v, %+v, %v", got, res, err)
	}
	got = nil
	_, err = c.PSStream(context.Background(), PSQuery{Exited: true}, func(p ProcInfo) error { got = append(got, p.GPID); return nil })
	if err == nil || !strings.Contains(err.Error(), "after 2 rows: node n: etcd went away") || !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("broken listing: rows %v, %v", got, err)
	}
}
