package clusterfs

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/joblog"
	"github.com/ssi-cluster/ssi/pidtable"
)

// fake serves a growing log and fixed tables, counting requests.
type fake struct {
	log       []byte
	ps, nodes int
	offsets   []int64
}

func (f *fake) PS(context.Context, string, bool) ([]api.ProcInfo, error) {
	f.ps++
	return []api.ProcInfo{
		{Proc: pidtable.Proc{GPID: 7, Node: "n1", User: "alice", State: pidtable.Running, Argv: []string{"sleep", "9"}}},
		{Proc: pidtable.Proc{GPID: 8, Node: "n1", User: "alice", State: pidtable.Exited, Argv: []string{"true"}}},
	}, nil
}

func (f *fake) Nodes(context.Context) ([]api.NodeInfo, error) {
	f.nodes++
	return []api.NodeInfo{{Node: pidtable.Node{Name: "n1", Labels: map[string]string{"b": "2", "a": "1"}}, Ready: true}}, nil
}

func (f *fake) Logs(_ context.Context, _ uint64, _ bool, off int64) (io.ReadCloser, error) {
	f.offsets = append(f.offsets, off)
	return io.NopCloser(bytes.NewReader(f.log[off:])), nil
}

func TestOutputIsIncremental(t *testing.T) {
	src := &fake{}
	now := time.Unix(0, 0)
	l := logs{src: src, ttl: time.Second, now: func() time.Time { return now }, jobs: map[uint64]*output{}}
	src.log = joblog.Append(nil, joblog.Record{Kind: joblog.Stdout, Data: []byte("a\n")})
	src.log = joblog.Append(src.log, joblog.Record{Kind: joblog.Stderr, Data: []byte("oops\n")})
	full := len(src.log)
	src.log = append(src.log, joblog.Append(nil, joblog.Record{Kind: joblog.Stdout, Data: []byte("b\n")})[:3]...) // half a record
	ctx := context.Background()
	if b, _ := l.get(ctx, 7, false); string(b) != "a\n" {
		t.Fatalf("stdout %q", b)
	}
	if b, _ := l.get(ctx, 7, true); string(b) != "oops\n" {
		t.Fatalf("stderr %q (cached: one fetch)", b)
	}
	src.log = joblog.Append(src.log[:full], joblog.Record{Kind: joblog.Stdout, Data: []byte("b\n")})
	src.log = joblog.Append(src.log, joblog.Record{Kind: joblog.Exit, Data: []byte(`{"code":0}`)})
	now = now.Add(time.Second)
	if b, _ := l.get(ctx, 7, false); string(b) != "a\nb\n" {
		t.Fatalf("stdout %q", b)
	}
	now = now.Add(time.Hour)
	l.get(ctx, 7, false) // ended: no more fetches
	if len(src.offsets) != 2 || src.offsets[1] != int64(full) {
		t.Fatalf("fetched from offsets %v, want [0 %d]", src.offsets, full)
	}
}

func TestTablesAndRendering(t *testing.T) {
	src := &fake{}
	f := New(Config{Source: src})
	ctx := context.Background()
	procs, gpids, nodes, err := f.tables.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.tables.get(ctx)
	if src.ps != 1 || src.nodes != 1 {
		t.Fatalf("%d ps and %d nodes requests within the TTL, want 1 each", src.ps, src.nodes)
	}
	if got := string(nodeJobs("n1", gpids, procs)); got != "7\talice\trunning\tsleep 9\n" {
		t.Fatalf("jobs %q (ended jobs are not listed)", got)
	}
	if got := string(cmdline(procs[7])); got != "sleep\x009\x00" {
		t.Fatalf("cmdline %q", got)
	}
	if s := string(procStatus(procs[7])); !strings.Contains(s, "Gpid:\t7\nState:\trunning\nNode:\tn1\n") {
		t.Fatalf("status %q", s)
	}
	if s := string(nodeStatus(nodes[0])); !strings.Contains(s, "Label:\ta=1\nLabel:\tb=2\n") {
		t.Fatalf("node status %q", s)
	}
}
