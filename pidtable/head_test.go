package pidtable

import (
	"encoding/json"
	"testing"
	"time"
)

// TestDecodeHead: the fast head scan agrees with json.Unmarshal on records
// as pidtable writes them and on odd but valid ones.
func TestDecodeHead(t *testing.T) {
	now := time.Now()
	code := 1
	full, _ := json.Marshal(Proc{GPID: 42, Node: "n\"1", User: "alice", State: Exited, ExitCode: &code, Argv: []string{"a,b}", "{[\""},
		Constraints: map[string]string{"gpid": "7", "x": "}"}, Migration: &Migration{ID: "m", Target: "t"}, Created: now})
	for _, raw := range []string{
		string(full),
		`{"gpid":7,"node":"a","user":"u","state":"running"}`,
		` { "state" : "lost" , "x" : [1, {"node":"no"}, "]"], "gpid" : 9 , "node" : "b" , "user" : null } `,
		`{"gp\u0069d":3,"node":"c"}`,
		`{"gpid":1e3,"node":"d"}`,
		`{"node":"e","user":"\u00e9l\u00e8ve","gpid":5,"extra":{"deep":[[[{}]]]},"t":true,"f":false,"n":null}`,
		`{}`,
		`{"GPID":8,"Node":"f","gpid":9}`,
		"{\"gpid\":8,\"node\":\"\xff\xfe\"}",
	} {
		if !json.Valid([]byte(raw)) {
			t.Fatalf("test record not valid JSON: %s", raw)
		}
		var want Head
		werr := json.Unmarshal([]byte(raw), &want)
		got, err := decodeHead([]byte(raw))
		if (err != nil) != (werr != nil) || (werr == nil && got != want) {
			t.Errorf("decodeHead(%s) = %+v, %v; json.Unmarshal: %+v, %v", raw, got, err, want, werr)
		}
	}
}

// FuzzDecodeHead: on any valid JSON, the head is what json.Unmarshal reads.
func FuzzDecodeHead(f *testing.F) {
	f.Add(`{"gpid":7,"node":"a","user":"u","state":"running"}`)
	f.Add(`{"a":[{"b":"}"}],"gpid":1}`)
	f.Fuzz(func(t *testing.T, raw string) {
		if !json.Valid([]byte(raw)) {
			return
		}
		var want Head
		werr := json.Unmarshal([]byte(raw), &want)
		got, err := decodeHead([]byte(raw))
		if werr == nil && (err != nil || got != want) {
			t.Fatalf("decodeHead(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	})
}

// headEdges are records, valid or not, validHead must agree on with
// json.Valid and json.Unmarshal.
var headEdges = []string{
	`{"gpid":7,"node":"a","user":"u","state":"running"}`, ` { "gpid" : 7 , "node" : "a" } `, `{}`, `{"gpid":7,}`,
	`{"gpid":7 "node":"a"}`, `{"gpid":07}`, `{"gpid":-7}`, `{"gpid":1.5}`, `{"gpid":1e3}`, `{"gpid":"7"}`, `{"gpid":null}`,
	`{"node":null,"gpid":1}`, `{"node":1}`, `{"node":"\u0041"}`, `{"gp\u0069d":3}`, `{"GPID":3}`, `{"Gpid":3,"gpid":4}`,
	`{"gpid":1,"gpid":2}`, `{"x":[1,2,{"a":[true,false,null]}],"gpid":1}`, `{"x":[1,]}`, `{"x":[,1]}`, `{"x":{"a"}}`,
	`{"x":tru}`, `{"x":nul}`, `{"x":-}`, `{"x":1.}`, `{"x":.1}`, `{"x":1e}`, `{"x":1e+}`, `{"x":-0.0e-0}`, `{"x":+1}`,
	`{"x":"\q"}`, `{"x":"\u12"}`, `{"x":"\u12G4"}`, `{"x":"\ud800"}`, "{\"x\":\"\x01\"}", "{\"x\":\"\xff\"}", `{"x":"a`,
	`{"x":1}}`, `{"x":1} {}`, `{"x":1}x`, `[]`, `1`, `"s"`, ``, ` `, `{`, `{"gpid"}`, `{"gpid":}`, `{:1}`,
	`{"node":"é"}`, `{"state":"r\"x"}`, `{"user":"a","user":null}`, `{"ſtate":"x"}`,
}

// checkValidHead fails t unless validHead agrees with json.Valid and
// decodeHead on raw: where it says ok, raw is valid and its head theirs.
func checkValidHead(t *testing.T, raw []byte) bool {
	t.Helper()
	got, ok := validHead(raw)
	if !ok {
		return false
	}
	if !json.Valid(raw) {
		t.Fatalf("validHead(%q) ok; json.Valid says invalid", raw)
	}
	want, err := decodeHead(raw)
	if err != nil || got != want {
		t.Fatalf("validHead(%q) = %+v; decodeHead: %+v, %v", raw, got, want, err)
	}
	return true
}

func TestValidHead(t *testing.T) {
	for _, raw := range headEdges {
		checkValidHead(t, []byte(raw))
	}
	// Records as pidtable writes them take the one pass.
	now := time.Now()
	code := 1
	for _, p := range []Proc{
		{GPID: 42, Node: "n1", User: "alice", State: Exited, ExitCode: &code, Argv: []string{"a,b}", "{[\"", "é\t"},
			Constraints: map[string]string{"gpid": "7", "x": "}"}, Migration: &Migration{ID: "m", Target: "t"}, Created: now},
		{GPID: 1, Node: "n", State: Running, Argv: []string{"sleep", "1"}, CPUs: 0.5, Memory: 1 << 30, Created: now, Started: now},
	} {
		raw, _ := json.Marshal(p)
		if !checkValidHead(t, raw) {
			t.Errorf("validHead(%s): not ok", raw)
		}
	}
}

// FuzzValidHead: where validHead says ok, json.Valid and decodeHead agree.
func FuzzValidHead(f *testing.F) {
	for _, raw := range headEdges {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkValidHead(t, raw) })
}
