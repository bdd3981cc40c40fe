package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/pidtable"
)

// TestEventsFollow: GET /v1/events?follow=1 answers the log so far, then
// each new event as the etcd watch delivers it, filtered on the agent by
// type, gpid and node and by the visibility rule (bob sees no event of
// alice's jobs, a cluster event he does); an unknown type is a 400 naming
// the valid ones.
func TestEventsFollow(t *testing.T) {
	f := newAuthFixture(t)
	ctx := context.Background()
	lease, err := f.store.Client().Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(100)
	write := func(ev pidtable.Event) {
		t.Helper()
		seq++
		ev.Time = time.Now().UTC()
		ev.ID = pidtable.NewEventID(ev.Time, ev.Node, seq)
		if err := f.store.AddEvent(ctx, ev, lease.ID); err != nil {
			t.Fatal(err)
		}
	}
	code := 3
	write(pidtable.Event{Kind: pidtable.EventExit, Node: "node1", GPID: f.jobA, User: "alice", ExitCode: &code})

	follow := func(who int, query string) (<-chan pidtable.Event, func()) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, f.base+"/v1/events?follow=1&"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		resp, err := f.clients[who].Do(req.WithContext(cctx))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("follow %s as %s: %v %v", query, callerNames[who], resp, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Fatalf("follow: content type %q", ct)
		}
		ch := make(chan pidtable.Event, 16)
		go func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var ev pidtable.Event
				if json.Unmarshal(sc.Bytes(), &ev) == nil {
					ch <- ev
				}
			}
			close(ch)
		}()
		return ch, cancel
	}
	next := func(ch <-chan pidtable.Event, what string) pidtable.Event {
		t.Helper()
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("%s: the stream ended", what)
			}
			return ev
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing within 5 s", what)
		}
		return pidtable.Event{}
	}
	none := func(ch <-chan pidtable.Event, what string) {
		t.Helper()
		select {
		case ev := <-ch:
			t.Fatalf("%s: got %+v", what, ev)
		case <-time.After(300 * time.Millisecond):
		}
	}

	aliceCh, stopA := follow(alice, "type=exit,kill&gpid="+itoa(f.jobA))
	defer stopA()
	bobs, stopB := follow(bob, "type=exit,node")
	defer stopB()
	nodes, stopN := follow(admin, "node=node3")
	defer stopN()

	if ev := next(aliceCh, "alice's backlog"); ev.Kind != pidtable.EventExit || ev.GPID != f.jobA || ev.ExitCode == nil || *ev.ExitCode != 3 {
		t.Fatalf("alice's backlog: %+v", ev)
	}
	// Written after the streams opened.
	write(pidtable.Event{Kind: pidtable.EventRun, Node: "node1", GPID: f.jobA, User: "alice"})                   // no one's type
	write(pidtable.Event{Kind: pidtable.EventKill, Node: "node1", GPID: f.jobA, User: "alice", Signal: "TERM"})  // alice's
	write(pidtable.Event{Kind: pidtable.EventExit, Node: "node1", GPID: f.jobB, User: "bob", ExitCode: &code})   // bob's
	write(pidtable.Event{Kind: pidtable.EventNode, Phase: pidtable.PhaseNotReady, Node: "node1", From: "node3"}) // everyone's
	if ev := next(aliceCh, "alice's kill"); ev.Kind != pidtable.EventKill || ev.Signal != "TERM" {
		t.Fatalf("alice: %+v", ev)
	}
	none(aliceCh, "alice after her kill")
	if ev := next(bobs, "bob's exit"); ev.Kind != pidtable.EventExit || ev.GPID != f.jobB {
		t.Fatalf("bob: %+v (the backlog's exit of alice's job must not show)", ev)
	}
	if ev := next(bobs, "bob's node event"); ev.Kind != pidtable.EventNode || ev.From != "node3" {
		t.Fatalf("bob: %+v", ev)
	}
	none(bobs, "bob after the node event")
	if ev := next(nodes, "node3's"); ev.Kind != pidtable.EventNode || ev.Phase != pidtable.PhaseNotReady {
		t.Fatalf("node=node3: %+v", ev)
	}
	none(nodes, "node=node3 after its event")

	st, body := f.do(t, alice, http.MethodGet, "/v1/events?type=exit,bogus", "")
	if st != http.StatusBadRequest || !strings.Contains(body, `bogus`) || !strings.Contains(body, "checkpoint") {
		t.Fatalf("unknown type: %d %s; want 400 naming it and the valid kinds", st, body)
	}
}
