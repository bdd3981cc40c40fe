package msg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssi-cluster/ssi/pki"
)

var pkiCheckName = pki.CheckName

// Requests the agents serve on ssi.api.<user>.<op> (APIPrefix): the user
// is the subject's token, which only that user (or an admin) may publish to.
const (
	OpTopicCreate = "topic.create"
	OpTopicRm     = "topic.rm"
	OpTopicList   = "topic.list"
	OpDurable     = "durable"
)

// TopicSpec is a topic.create request.
type TopicSpec struct {
	Name     string        `json:"name"`
	Replicas int           `json:"replicas,omitempty"`
	MaxAge   time.Duration `json:"max_age,omitempty"`
	MaxBytes int64         `json:"max_bytes,omitempty"`
}

// TopicInfo is a topic in a topic.list reply.
type TopicInfo struct {
	Name      string         `json:"name"`
	Subjects  []string       `json:"subjects"`
	Replicas  int            `json:"replicas"`
	Messages  uint64         `json:"messages"`
	Bytes     uint64         `json:"bytes"`
	Consumers []ConsumerInfo `json:"consumers"`
}

// ConsumerInfo is a durable subscription: Lag is the messages not yet
// delivered, AckPending those delivered and not yet acknowledged.
type ConsumerInfo struct {
	Name       string `json:"name"`
	Lag        uint64 `json:"lag"`
	AckPending int    `json:"ack_pending"`
}

// DurableSpec is a durable request: make (or keep) a durable subscription
// Durable on Topic delivering to DeliverSubject(user, Topic, Durable).
type DurableSpec struct {
	Topic   string        `json:"topic"`
	Durable string        `json:"durable"`
	Filter  string        `json:"filter,omitempty"`
	Queue   string        `json:"queue,omitempty"`
	AckWait time.Duration `json:"ack_wait,omitempty"`
}

// errFinal marks the errors retrying does not cure.
var errFinal = errors.New("refused")

// Reply is every request's reply.
type Reply struct {
	Error string `json:"error,omitempty"`
	// Final: the error will not go away by retrying (bad input, no such
	// topic), unlike a timeout while JetStream elects a leader.
	Final  bool        `json:"final,omitempty"`
	Topics []TopicInfo `json:"topics,omitempty"`
	Topic  *TopicInfo  `json:"topic,omitempty"`
	// Deliver is where a durable's messages come (OpDurable).
	Deliver string `json:"deliver,omitempty"`
}

// GrantSpec is an admin's grant or revoke request (ssi.admin.grant,
// ssi.admin.revoke): users cannot publish under ssi.admin.
type GrantSpec struct {
	User    string `json:"user"`
	Subject string `json:"subject"`
	Pub     bool   `json:"pub"`
	Sub     bool   `json:"sub"`
}

// AdminPrefix is the subject of admins' requests to the agents.
const AdminPrefix = "ssi.admin."

// Service answers users' requests for topics on the agent's own
// connection (a node's certificate, all rights): any agent answers (a queue
// group), so the requests need no particular node.
type Service struct {
	nc     *nats.Conn
	js     nats.JetStreamContext
	grants *GrantStore
	log    *slog.Logger
}

// Serve answers requests on nc until ctx ends.
// grants may be nil (no grant requests served).
func Serve(ctx context.Context, nc *nats.Conn, grants *GrantStore, log *slog.Logger) error {
	js, err := nc.JetStream()
	if err != nil {
		return fmt.Errorf("msg: jetstream: %w", err)
	}
	s := &Service{nc: nc, js: js, grants: grants, log: log}
	sub, err := nc.QueueSubscribe(apiRoot+"*.>", "ssi-agents", s.handle)
	if err != nil {
		return fmt.Errorf("msg: subscribe to the API: %w", err)
	}
	defer sub.Unsubscribe()
	if grants != nil {
		asub, err := nc.QueueSubscribe(AdminPrefix+"*", "ssi-agents", s.handleAdmin)
		if err != nil {
			return fmt.Errorf("msg: subscribe to the admin API: %w", err)
		}
		defer asub.Unsubscribe()
	}
	<-ctx.Done()
	return nil
}

// handleAdmin serves grant and revoke: only admins and nodes may publish
// under ssi.admin (UserPermissions).
func (s *Service) handleAdmin(m *nats.Msg) {
	op := strings.TrimPrefix(m.Subject, AdminPrefix)
	var g GrantSpec
	rep := Reply{}
	err := json.Unmarshal(m.Data, &g)
	if err == nil && pkiCheckName(g.User) != nil {
		err = fmt.Errorf("%w: user %q", errFinal, g.User)
	}
	if err == nil {
		switch op {
		case "grant", "revoke":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = s.grants.Update(ctx, g.User, g.Subject, g.Pub, g.Sub, op == "revoke")
			cancel()
			if err == nil {
				s.log.Info("msg: "+op, "user", g.User, "subject", g.Subject, "pub", g.Pub, "sub", g.Sub)
			}
		default:
			err = fmt.Errorf("%w: unknown admin request %q", errFinal, op)
		}
	}
	if err != nil {
		rep = Reply{Error: err.Error(), Final: errors.Is(err, ErrBadSubject) || errors.Is(err, errFinal)}
	}
	b, _ := json.Marshal(rep)
	_ = m.Respond(b)
}

func (s *Service) handle(m *nats.Msg) {
	rest := strings.TrimPrefix(m.Subject, apiRoot)
	tok, op, _ := strings.Cut(rest, ".")
	user := strings.ReplaceAll(tok, "~", ".")
	rep, err := s.do(user, op, m.Data)
	if err != nil {
		rep = Reply{Error: err.Error(), Final: errors.Is(err, ErrBadSubject) || errors.Is(err, errFinal)}
		s.log.Debug("msg: request refused", "user", user, "op", op, "err", err)
	}
	b, _ := json.Marshal(rep)
	if m.Reply != "" {
		_ = m.Respond(b)
	}
}

func (s *Service) do(user, op string, data []byte) (Reply, error) {
	switch op {
	case OpTopicCreate:
		var t TopicSpec
		if err := json.Unmarshal(data, &t); err != nil {
			return Reply{}, fmt.Errorf("msg: bad request: %w", err)
		}
		return s.create(user, t)
	case OpTopicRm:
		var t TopicSpec
		if err := json.Unmarshal(data, &t); err != nil {
			return Reply{}, fmt.Errorf("msg: bad request: %w", err)
		}
		if err := CheckTopic(t.Name); err != nil {
			return Reply{}, err
		}
		if err := s.js.DeleteStream(StreamName(user, t.Name)); err != nil {
			if errors.Is(err, nats.ErrStreamNotFound) {
				return Reply{}, fmt.Errorf("%w: no topic %q of user %s ('ssi topics' lists them)", errFinal, t.Name, user)
			}
			return Reply{}, fmt.Errorf("remove topic %q: %w", t.Name, err)
		}
		return Reply{}, nil
	case OpTopicList:
		return s.list(user)
	case OpDurable:
		var d DurableSpec
		if err := json.Unmarshal(data, &d); err != nil {
			return Reply{}, fmt.Errorf("msg: bad request: %w", err)
		}
		return s.durable(user, d)
	}
	return Reply{}, fmt.Errorf("unknown request %q: want one of %s, %s, %s, %s", op, OpTopicCreate, OpTopicRm, OpTopicList, OpDurable)
}

func (s *Service) create(user string, t TopicSpec) (Reply, error) {
	if err := CheckTopic(t.Name); err != nil {
		return Reply{}, err
	}
	if t.Replicas == 0 {
		t.Replicas = 1
	}
	if t.Replicas < 1 || t.Replicas > 5 {
		return Reply{}, fmt.Errorf("--replicas %d: want 1 to 5", t.Replicas)
	}
	if t.MaxAge < 0 || t.MaxBytes < 0 {
		return Reply{}, errors.New("--max-age and --max-bytes must not be negative")
	}
	name := StreamName(user, t.Name)
	if _, err := s.js.StreamInfo(name); err == nil {
		return Reply{}, fmt.Errorf("%w: topic %q exists ('ssi topic rm %s' first to make it anew)", errFinal, t.Name, t.Name)
	}
	max := t.MaxBytes
	if max == 0 {
		max = -1
	}
	si, err := s.js.AddStream(&nats.StreamConfig{
		Name: name, Subjects: TopicSubjects(user, t.Name), Replicas: t.Replicas,
		MaxAge: t.MaxAge, MaxBytes: max, Storage: nats.FileStorage, Discard: nats.DiscardOld,
	})
	if err != nil {
		if strings.Contains(err.Error(), "insufficient resources") || strings.Contains(err.Error(), "no suitable peers") {
			return Reply{}, fmt.Errorf("topic %q with %d replicas: the cluster has not that many nodes with room (%w)", t.Name, t.Replicas, err)
		}
		return Reply{}, fmt.Errorf("create topic %q: %w", t.Name, err)
	}
	s.log.Info("msg: topic created", "user", user, "topic", t.Name, "replicas", t.Replicas)
	ti := s.info(user, si)
	return Reply{Topic: &ti}, nil
}

func (s *Service) info(user string, si *nats.StreamInfo) TopicInfo {
	topic, _, _ := TopicOf(si.Config.Name)
	ti := TopicInfo{Name: topic, Replicas: si.Config.Replicas, Messages: si.State.Msgs, Bytes: si.State.Bytes, Consumers: []ConsumerInfo{}}
	for _, sj := range si.Config.Subjects {
		ti.Subjects = append(ti.Subjects, Relative(user, sj))
	}
	for ci := range s.js.ConsumersInfo(si.Config.Name) {
		ti.Consumers = append(ti.Consumers, ConsumerInfo{Name: ci.Name, Lag: ci.NumPending, AckPending: ci.NumAckPending})
	}
	return ti
}

func (s *Service) list(user string) (Reply, error) {
	tok := UserToken(user)
	rep := Reply{Topics: []TopicInfo{}}
	for si := range s.js.StreamsInfo() {
		if _, owner, ok := TopicOf(si.Config.Name); ok && owner == tok {
			rep.Topics = append(rep.Topics, s.info(user, si))
		}
	}
	return rep, nil
}

func (s *Service) durable(user string, d DurableSpec) (Reply, error) {
	if err := CheckTopic(d.Topic); err != nil {
		return Reply{}, err
	}
	if err := CheckTopic(d.Durable); err != nil {
		return Reply{}, fmt.Errorf("--durable: %w", err)
	}
	stream := StreamName(user, d.Topic)
	if _, err := s.js.StreamInfo(stream); errors.Is(err, nats.ErrStreamNotFound) {
		return Reply{}, fmt.Errorf("%w: no topic %q of user %s: a durable subscription needs one ('ssi topic create %s')", errFinal, d.Topic, user, d.Topic)
	} else if err != nil {
		return Reply{}, fmt.Errorf("topic %q: %w", d.Topic, err)
	}
	if d.AckWait <= 0 {
		d.AckWait = 10 * time.Second
	}
	deliver := DeliverSubject(user, d.Topic, d.Durable)
	// One message in flight: a delivery lost while a leader changes is sent
	// again before any later one, so a subscriber sees the messages in
	// order. A queue group shares the work: many in flight.
	pending := 1
	if d.Queue != "" {
		pending = 1024
	}
	cc := &nats.ConsumerConfig{
		Durable: d.Durable, DeliverSubject: deliver, DeliverGroup: d.Queue,
		AckPolicy: nats.AckExplicitPolicy, AckWait: d.AckWait, MaxAckPending: pending,
		DeliverPolicy: nats.DeliverAllPolicy,
	}
	if d.Filter != "" {
		full, err := Subject(user, d.Filter, true)
		if err != nil {
			return Reply{}, err
		}
		cc.FilterSubject = full
	}
	if _, err := s.js.ConsumerInfo(stream, d.Durable); err == nil {
		// It exists: resume it as it is (its position is the point).
		return Reply{Deliver: deliver}, nil
	}
	if _, err := s.js.AddConsumer(stream, cc); err != nil {
		return Reply{}, fmt.Errorf("durable subscription %q on topic %q: %w", d.Durable, d.Topic, err)
	}
	return Reply{Deliver: deliver}, nil
}
