package pidtable

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one member of the cluster's etcd, with what its own status says.
type Member struct {
	ID         uint64
	Name       string // empty until the member has started once
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
	// Leader, Healthy and Err come from asking the member itself (Status):
	// Healthy means it answered and knows a leader.
	Leader  bool
	Healthy bool
	Err     string
}

// Started reports whether the member has started (and published its name).
func (m Member) Started() bool { return m.Name != "" }

// Members lists the etcd cluster's members, each asked for its status (at
// most timeout each); an error only when the list itself cannot be read.
func Members(ctx context.Context, c *clientv3.Client, timeout time.Duration) ([]Member, error) {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.MemberList(lctx)
	if err != nil {
		return nil, fmt.Errorf("pidtable: list etcd members: %w", err)
	}
	out := make([]Member, 0, len(resp.Members))
	for _, m := range resp.Members {
		mm := Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner}
		if len(m.ClientURLs) == 0 {
			mm.Err = "not started"
			out = append(out, mm)
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := c.Status(sctx, m.ClientURLs[0])
		cancel()
		switch {
		case err != nil:
			mm.Err = err.Error()
		case st.Leader == 0:
			mm.Err = "no leader"
		default:
			mm.Healthy, mm.Leader = true, st.Leader == m.ID
			if len(st.Errors) > 0 {
				mm.Healthy, mm.Err = false, strings.Join(st.Errors, "; ")
			}
		}
		out = append(out, mm)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// AddLearner adds a member named name with peerURL to the cluster c talks to,
// as a learner (a member that receives the log but does not vote, so the
// quorum does not change until it is promoted), and returns its ID and the
// initial cluster (NAME=PEER-URL,...) to start it with. A member with that
// peer URL that never started (an earlier attempt died before the start) is
// taken over instead of added again.
func AddLearner(ctx context.Context, c *clientv3.Client, name, peerURL string) (id uint64, initialCluster string, err error) {
	list, err := c.MemberList(ctx)
	if err != nil {
		return 0, "", fmt.Errorf("pidtable: list etcd members: %w", err)
	}
	members := list.Members
	for _, m := range members {
		if !slices.Contains(m.PeerURLs, peerURL) {
			continue
		}
		if m.Name != "" && m.Name != name {
			return 0, "", fmt.Errorf("pidtable: etcd peer URL %s belongs to member %s: give this node its own address", peerURL, m.Name)
		}
		if m.Name == name {
			return 0, "", fmt.Errorf("pidtable: etcd member %s (%s) already started once, but this data dir holds no member: remove it first (etcdctl member remove %x), then start this agent again", name, peerURL, m.ID)
		}
		id = m.ID
	}
	for id == 0 {
		resp, err := c.MemberAddAsLearner(ctx, []string{peerURL})
		if err == nil {
			id, members = resp.Member.ID, resp.Members
			break
		}
		// etcd refuses a change of membership until its leader has been
		// in touch with a majority for 5 s (a member promoted a moment
		// ago does not count yet): wait for that, not for anything else.
		if !errors.Is(rpctypes.Error(err), rpctypes.ErrUnhealthy) {
			return 0, "", fmt.Errorf("pidtable: add etcd member %s at %s: %w", name, peerURL, err)
		}
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("pidtable: add etcd member %s at %s: %w (last: %w)", name, peerURL, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	var parts []string
	for _, m := range members {
		n := m.Name
		if m.ID == id {
			n = name
		}
		if n == "" {
			// Another member still joining: it is named once it starts;
			// our member cannot list it yet, and need not (it learns it
			// from the log).
			continue
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return id, strings.Join(parts, ","), nil
}

// Promote makes learner id a voting member once it has caught up with the
// leader, trying every interval until ctx ends. A member that is no learner
// (promoted before) is left as it is.
func Promote(ctx context.Context, c *clientv3.Client, id uint64, interval time.Duration) error {
	for {
		_, err := c.MemberPromote(ctx, id)
		if err == nil || errors.Is(rpctypes.Error(err), rpctypes.ErrMemberNotLearner) {
			return nil
		}
		// Not caught up yet (ErrMemberLearnerNotReady), or no leader for
		// a moment: both pass; try again until ctx ends.
		select {
		case <-ctx.Done():
			return fmt.Errorf("pidtable: promote etcd member %x: %w (last: %w)", id, ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}
