package api

import (
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ssi-cluster/ssi/pidtable"
)

var update = flag.Bool("update", false, "rewrite testdata/wire.json from the types")

// TestWireFields pins the JSON fields of the API's answers that carry etcd
// records as they are stored (pidtable's types, embedded or passed on:
// ssi ps streams the stored records themselves, without decoding them).
// A change of a record's layout is a change of the API: this test fails
// until testdata/wire.json is rewritten (go test ./api -run TestWireFields
// -update) and docs/CLI.md says what changed.
func TestWireFields(t *testing.T) {
	types := map[string]any{
		"ProcInfo":       ProcInfo{},
		"NodeInfo":       NodeInfo{},
		"CheckpointInfo": CheckpointInfo{},
		"Event":          pidtable.Event{},
	}
	got := map[string][]string{}
	for name, v := range types {
		got[name] = jsonFields(reflect.TypeOf(v), "")
	}
	const golden = "testdata/wire.json"
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string][]string
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for name, fields := range got {
		if !slices.Equal(fields, want[name]) {
			t.Errorf("the JSON fields of %s changed (an API change: say it in docs/CLI.md, then run with -update):\n got %v\nwant %v", name, fields, want[name])
		}
	}
}

// jsonFields lists the JSON keys of t's encoding, nested objects as
// "outer.inner", sorted.
func jsonFields(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() == "time" {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			out = append(out, jsonFields(f.Type, prefix)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, prefix+name)
		out = append(out, jsonFields(f.Type, prefix+name+".")...)
	}
	slices.Sort(out)
	return out
}
