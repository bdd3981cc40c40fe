package msg

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssi-cluster/ssi/pki"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// broker starts a one-node broker with a new CA and returns it and a TLS
// config maker for users.
func broker(t *testing.T) (*Broker, func(user string, admin bool) *tls.Config) {
	bs, creds := brokers(t, 1)
	return bs[0], creds
}

// brokers starts a cluster of n brokers (JetStream needs two at least).
func brokers(t *testing.T, n int) ([]*Broker, func(user string, admin bool) *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	node, err := pki.Bootstrap(filepath.Join(dir, "pki"), "node1", []string{"127.0.0.1"}, "127.0.0.1:7070", "root")
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for range n {
		routes = append(routes, freePort(t))
	}
	var bs []*Broker
	for i := range n {
		b, err := Start(Config{
			Name: "node" + string(rune('1'+i)), ClientListen: freePort(t), ClusterListen: routes[i], Advertise: "127.0.0.1",
			Routes:   routes,
			StoreDir: filepath.Join(dir, "nats", string(rune('1'+i))), MaxMemory: 16 << 20, MaxStore: 64 << 20, Node: node,
			Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Shutdown)
		bs = append(bs, b)
	}
	return bs, func(user string, admin bool) *tls.Config {
		cc, err := pki.NewUserConfig(node.CA, "127.0.0.1:7070", user, admin, pki.Validity{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := cc.TLS()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

func TestSubjectsBelongToUsers(t *testing.T) {
	b, creds := broker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, err := Dial(ctx, b.ClientURL(), "alice", creds("alice", false), "t")
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	bob, err := Dial(ctx, b.ClientURL(), "bob", creds("bob", false), "t")
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()

	// alice's own subject: pub/sub and request/reply work.
	sub, err := alice.SubscribeSync("u.alice.orders")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Subscribe("u.alice.svc", func(m *nats.Msg) { _ = m.Respond(append([]byte("re:"), m.Data...)) }); err != nil {
		t.Fatal(err)
	}
	if err := alice.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := alice.Publish("u.alice.orders", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "x" {
		t.Fatalf("alice's message: %v %v", m, err)
	}
	r, err := alice.Request("u.alice.svc", []byte("q"), 5*time.Second)
	if err != nil || string(r.Data) != "re:q" {
		t.Fatalf("request: %v %v", r, err)
	}

	// bob on alice's subjects: refused, with the rule in the error.
	if _, err := bob.SubscribeSync("u.alice.orders"); err != nil {
		t.Fatal(err)
	}
	err = bob.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), "u.bob.>") {
		t.Fatalf("bob subscribing to alice's subject: %v", err)
	}
	t.Logf("bob subscribing to alice's subject: %v", err)
	bob2, err := Dial(ctx, b.ClientURL(), "bob", creds("bob", false), "t")
	if err != nil {
		t.Fatal(err)
	}
	defer bob2.Close()
	_ = bob2.Publish("u.alice.orders", []byte("forged"))
	if err := bob2.Check(ctx); err == nil {
		t.Fatal("bob published to alice's subject")
	}
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("alice got bob's forged message %q", m.Data)
	}
	// bob cannot ask the agents for alice's topics either.
	_ = bob2.Publish(APIPrefix("alice")+OpTopicList, nil)
	if err := bob2.Check(ctx); err == nil {
		t.Fatal("bob published to alice's API subject")
	}

	// An admin may use any subject.
	root, err := Dial(ctx, b.ClientURL(), "root", creds("root", true), "t")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_ = root.Publish("u.alice.orders", []byte("from root"))
	if err := root.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "from root" {
		t.Fatalf("admin's message: %v %v", m, err)
	}
}

func TestNoCertificateRefused(t *testing.T) {
	b, _ := broker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := pki.NewUserConfig(other, "127.0.0.1:1", "alice", false, pki.Validity{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := cc.TLS()
	c.InsecureSkipVerify = true // the server must refuse us, whatever we trust
	if _, err := Dial(ctx, b.ClientURL(), "alice", c, "t"); err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
}

func TestSubject(t *testing.T) {
	for in, want := range map[string]string{"orders": "u.alice.orders", "a.b": "u.alice.a.b", "/u.bob.x": "u.bob.x"} {
		got, err := Subject("alice", in, false)
		if err != nil || got != want {
			t.Errorf("Subject(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a..b", "a.", "*", "a.>", "a b", "x*"} {
		if _, err := Subject("alice", bad, false); !errors.Is(err, ErrBadSubject) {
			t.Errorf("Subject(%q): %v, want ErrBadSubject", bad, err)
		}
	}
	if got, err := Subject("a.b", "x.>", true); err != nil || got != "u.a~b.x.>" {
		t.Errorf("wildcard subject of a dotted user: %q %v", got, err)
	}
	if _, err := Subject("alice", ">.x", true); err == nil {
		t.Error("'>' not last accepted")
	}
	if s := StreamName("a.b", "orders"); s != "orders@a~b" {
		t.Errorf("StreamName = %q", s)
	}
	if tp, u, ok := TopicOf("orders@a~b"); !ok || tp != "orders" || u != "a~b" {
		t.Errorf("TopicOf: %q %q %v", tp, u, ok)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func TestTopicsAndDurable(t *testing.T) {
	bs, creds := brokers(t, 2)
	b := bs[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodeTLS := b.cfg.Node.ClientTLS()
	nodeTLS.ServerName = pki.NodeSAN
	agent, err := Dial(ctx, b.ClientURL(), "node:node1", nodeTLS, "agent")
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = Serve(sctx, agent.Conn, nil, slog.New(slog.DiscardHandler)) }()
	if err := agent.Check(ctx); err != nil {
		t.Fatal(err)
	}
	alice, err := Dial(ctx, b.ClientURL(), "alice", creds("alice", false), "t")
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	var rep Reply
	for i := 0; i < 50; i++ { // the JetStream meta leader may take a moment
		if rep, err = alice.Call(ctx, OpTopicCreate, TopicSpec{Name: "orders", MaxAge: time.Hour}); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.Topic == nil || rep.Topic.Name != "orders" {
		t.Fatalf("create: %+v", rep)
	}
	if _, err := alice.Call(ctx, OpTopicCreate, TopicSpec{Name: "orders"}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second create: %v", err)
	}
	js, _ := alice.JetStream()
	for i := 0; i < 20; i++ {
		if _, err := js.Publish("u.alice.orders", []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err = alice.Call(ctx, OpDurable, DurableSpec{Topic: "orders", Durable: "w"})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := alice.SubscribeSync(rep.Deliver)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil || m.Data[0] != byte('a'+i) {
			t.Fatalf("message %d: %v %v", i, m, err)
		}
		if err := m.Respond([]byte("+ACK")); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.Check(ctx); err != nil {
		t.Fatal(err)
	}
	_ = sub.Unsubscribe()
	// bob sees none of alice's topics, and cannot read her durable.
	bob, err := Dial(ctx, b.ClientURL(), "bob", creds("bob", false), "t")
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if rep, err := bob.Call(ctx, OpTopicList, nil); err != nil || len(rep.Topics) != 0 {
		t.Fatalf("bob's topics: %+v %v", rep, err)
	}
	if _, err := bob.SubscribeSync(rep.Deliver); err != nil {
		t.Fatal(err)
	}
	if err := bob.Check(ctx); err == nil {
		t.Fatal("bob subscribed to alice's durable delivery")
	}
	rep, err = alice.Call(ctx, OpTopicList, nil)
	if err != nil || len(rep.Topics) != 1 || rep.Topics[0].Messages != 20 || len(rep.Topics[0].Consumers) != 1 {
		t.Fatalf("alice's topics: %+v %v", rep, err)
	}
	if c := rep.Topics[0].Consumers[0]; c.Name != "w" || c.Lag+uint64(c.AckPending) != 10 {
		t.Fatalf("consumer: %+v", c)
	}
	if _, err := alice.Call(ctx, OpTopicRm, TopicSpec{Name: "orders"}); err != nil {
		t.Fatal(err)
	}
}

// TestDialOwnBrokerFirst: a client given several brokers (a job's
// SSI_NATS_URL: its node's first) connects to the first, every time; nats.go
// shuffles the list unless told not to.
func TestDialOwnBrokerFirst(t *testing.T) {
	bs, creds := brokers(t, 2)
	urls := bs[0].ClientURL() + "," + bs[1].ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 16 {
		c, err := Dial(ctx, urls, "alice", creds("alice", false), "t")
		if err != nil {
			t.Fatal(err)
		}
		got := c.ConnectedUrl()
		c.Close()
		if got != bs[0].ClientURL() {
			t.Fatalf("connection %d went to %s, want the first of %s", i, got, urls)
		}
	}
}
