package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/msg"
	"github.com/ssi-cluster/ssi/pki"
)

// natsClientOffset is the broker's port beside the agent's API port
// (agent/msg.go).
const natsClientOffset = 2

// natsSubject connects as natsDial does and resolves the subject arg as the
// connection's user's (wild: wildcards allowed); a bad subject is a usage
// error.
func (e *env) natsSubject(ctx context.Context, arg string, wild bool) (*msg.Client, string, error) {
	nc, err := e.natsDial(ctx)
	if err != nil {
		return nil, "", err
	}
	subj, err := msg.Subject(nc.User, arg, wild)
	if err != nil {
		nc.Close()
		return nil, "", usageErr("%v", err)
	}
	return nc, subj, nil
}

// natsDial connects to the cluster's brokers as the config's user:
// $SSI_NATS_URL (set in jobs) or the agent's address with the broker's port.
func (e *env) natsDial(ctx context.Context) (*msg.Client, error) {
	t, err := e.resolve()
	if err != nil {
		return nil, err
	}
	urls := e.getenv("SSI_NATS_URL")
	var tlsCfg *tls.Config
	user := e.getenv("USER")
	if t.cfg != nil {
		if tlsCfg, err = t.cfg.TLS(); err != nil {
			return nil, err
		}
		c, err := pki.ParseCert([]byte(t.cfg.Cert))
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", t.source, err)
		}
		id, err := pki.IdentityOf(c)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", t.source, err)
		}
		user = id.Name
	}
	if urls == "" {
		ep := strings.TrimPrefix(strings.TrimPrefix(t.endpoint, "https://"), "http://")
		h, p, err := net.SplitHostPort(strings.TrimRight(ep, "/"))
		if err != nil {
			return nil, fmt.Errorf("endpoint %q (from %s): want HOST:PORT: %w", t.endpoint, t.source, err)
		}
		n, _ := strconv.Atoi(p)
		scheme := "tls://"
		if tlsCfg == nil {
			scheme = "nats://"
		}
		urls = scheme + net.JoinHostPort(h, strconv.Itoa(n+natsClientOffset))
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return msg.Dial(dctx, urls, user, tlsCfg, "ssi "+user)
}

func pubCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "pub SUBJECT [MSG | -]",
		Short: "Publish a message (- or no MSG: one message per line of stdin)",
		Long: `Publish MSG to SUBJECT on the cluster's broker. Subjects are relative to your
namespace: 'ssi pub orders x' publishes to u.<you>.orders. A subject starting
with '/' is absolute (/u.bob.orders), for subjects an admin granted you.
A subject a durable topic holds is stored in it and acknowledged.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, subj, err := e.natsSubject(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			defer nc.Close()
			// A subject one of the user's topics holds is published with
			// the topic's acknowledgement (stored on its replicas); others
			// plainly.
			durable := false
			if rel, ok := strings.CutPrefix(subj, msg.Namespace(nc.User)); ok {
				topic, _, _ := strings.Cut(rel, ".")
				rep, err := nc.CallRetry(cmd.Context(), msg.OpTopicList, struct{}{})
				if err != nil {
					return err
				}
				for _, t := range rep.Topics {
					durable = durable || t.Name == topic
				}
			}
			js, _ := nc.JetStream()
			run, seq := nuid.Next(), 0
			send := func(data []byte) error {
				if int64(len(data)) > nc.MaxPayload() {
					return fmt.Errorf("message of %d bytes: the broker takes at most %d", len(data), nc.MaxPayload())
				}
				if !durable {
					return nc.Publish(subj, data)
				}
				// Retried for a minute while the topic's replicas elect a
				// leader (a node died). The message ID makes a retry of a
				// stored message a no-op (the topic's duplicate window).
				seq++
				id := nats.MsgId(run + "-" + strconv.Itoa(seq))
				var err error
				for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
					if _, err = js.Publish(subj, data, id, nats.AckWait(5*time.Second)); err == nil {
						return nil
					}
					if e := nc.Err(); e != nil {
						return e
					}
					time.Sleep(250 * time.Millisecond)
				}
				return fmt.Errorf("publish to topic subject %s: no acknowledgement for a minute: %w", subj, err)
			}
			if len(args) == 2 && args[1] != "-" {
				if err := send([]byte(args[1])); err != nil {
					return err
				}
				return nc.Check(cmd.Context())
			}
			if e.stdin == nil {
				return usageErr("no MSG and no stdin")
			}
			sc := bufio.NewScanner(e.stdin)
			sc.Buffer(make([]byte, 64<<10), int(nc.MaxPayload())+1)
			for sc.Scan() {
				if err := send(sc.Bytes()); err != nil {
					return err
				}
			}
			if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
				return fmt.Errorf("a line of stdin is a message over the broker's limit: the broker takes at most %d bytes", nc.MaxPayload())
			} else if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			return nc.Check(cmd.Context())
		},
	}
	return c
}

func subCmd(e *env) *cobra.Command {
	var durable, queue, ackWait string
	var count int
	var withSubject bool
	c := &cobra.Command{
		Use:   "sub SUBJECT [--durable NAME] [--queue GROUP]",
		Short: "Print the messages published to SUBJECT as they come",
		Long: `Print the messages published to SUBJECT (relative to your namespace; '*' and
'>' wildcards allowed) as they come, one per line. --queue GROUP shares the
messages among the subscribers of the group. --durable NAME subscribes to a
durable topic (ssi topic create) under a name it keeps: each message is
acknowledged once printed, and the next 'ssi sub --durable NAME' resumes
after the last acknowledged one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			nc, subj, err := e.natsSubject(ctx, args[0], true)
			if err != nil {
				return err
			}
			defer nc.Close()
			ch := make(chan *nats.Msg, 4096)
			var sub *nats.Subscription
			if durable != "" {
				topic, _, _ := strings.Cut(args[0], ".")
				wait, err := time.ParseDuration(ackWait)
				if err != nil {
					return usageErr("--ack-wait %q: %v", ackWait, err)
				}
				spec := msg.DurableSpec{Topic: topic, Durable: durable, Queue: queue, AckWait: wait}
				if args[0] != topic {
					spec.Filter = args[0]
				}
				rep, err := nc.CallRetry(ctx, msg.OpDurable, spec)
				if err != nil {
					return err
				}
				if queue != "" {
					sub, err = nc.ChanQueueSubscribe(rep.Deliver, queue, ch)
				} else {
					sub, err = nc.ChanSubscribe(rep.Deliver, ch)
				}
				if err != nil {
					return err
				}
			} else if queue != "" {
				sub, err = nc.ChanQueueSubscribe(subj, queue, ch)
			} else {
				sub, err = nc.ChanSubscribe(subj, ch)
			}
			if err != nil {
				return err
			}
			_ = sub.SetPendingLimits(-1, -1)
			if err := nc.Check(ctx); err != nil {
				return err
			}
			w := bufio.NewWriter(e.stdout)
			var last uint64 // the last stream sequence printed (durable)
			n := 0
			for {
				select {
				case <-ctx.Done():
					return w.Flush()
				case m := <-ch:
					if durable != "" {
						if m.Reply == "" {
							continue // flow control or heartbeat without reply
						}
						if len(m.Data) == 0 && m.Header.Get("Status") != "" {
							_ = m.Respond(nil) // flow control
							continue
						}
						meta, err := m.Metadata()
						if err == nil && meta.Sequence.Stream <= last {
							_ = m.Respond([]byte("+ACK")) // a redelivery of one printed
							continue
						}
						if err == nil {
							last = meta.Sequence.Stream
						}
					}
					if withSubject {
						fmt.Fprintf(w, "%s ", msg.Relative(nc.User, m.Subject))
					}
					w.Write(m.Data)
					if len(m.Data) == 0 || m.Data[len(m.Data)-1] != '\n' {
						w.WriteByte('\n')
					}
					if len(ch) == 0 || durable != "" {
						if err := w.Flush(); err != nil {
							return err
						}
					}
					if durable != "" {
						if err := m.Respond([]byte("+ACK")); err != nil {
							return fmt.Errorf("acknowledge: %w", err)
						}
					}
					n++
					if count > 0 && n >= count {
						if durable != "" {
							_ = nc.Flush()
						}
						return w.Flush()
					}
				}
			}
		},
	}
	f := c.Flags()
	f.StringVar(&durable, "durable", "", "subscribe to a durable topic under this name: resume where it left off")
	f.StringVar(&queue, "queue", "", "share the messages among the subscribers of this group")
	f.StringVar(&ackWait, "ack-wait", "10s", "--durable: a message not acknowledged after this long is sent again")
	f.IntVarP(&count, "count", "n", 0, "exit after this many messages (0: never)")
	f.BoolVar(&withSubject, "subject", false, "print each message's subject before it")
	return c
}

func requestCmd(e *env) *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "request SUBJECT MSG [--timeout 5s]",
		Short: "Send MSG to SUBJECT and print the reply (request/reply)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, subj, err := e.natsSubject(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			m, err := nc.RequestWithContext(ctx, subj, []byte(args[1]))
			if err != nil {
				if e := nc.Err(); e != nil {
					return e
				}
				if errors.Is(err, nats.ErrNoResponders) {
					return fmt.Errorf("no one answers on %s ('ssi reply %s' answers)", subj, args[0])
				}
				if errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("no reply on %s within %s", subj, timeout)
				}
				return fmt.Errorf("request %s: %w", subj, err)
			}
			_, err = fmt.Fprintf(e.stdout, "%s\n", m.Data)
			return err
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long without a reply")
	return c
}

func replyCmd(e *env) *cobra.Command {
	var queue string
	var count int
	c := &cobra.Command{
		Use:   "reply SUBJECT [MSG]",
		Short: "Answer the requests sent to SUBJECT with MSG (without MSG: the request itself, from node N)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			nc, subj, err := e.natsSubject(ctx, args[0], true)
			if err != nil {
				return err
			}
			defer nc.Close()
			done := make(chan struct{})
			n := 0
			_, err = nc.QueueSubscribe(subj, queue, func(m *nats.Msg) {
				out := []byte(nil)
				if len(args) == 2 {
					out = []byte(args[1])
				} else {
					out = fmt.Appendf(nil, "%s (from %s)", m.Data, e.getenv("SSI_NODE"))
				}
				_ = m.Respond(out)
				n++
				if count > 0 && n == count {
					close(done)
				}
			})
			if err != nil {
				return err
			}
			if err := nc.Check(ctx); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
			case <-done:
				_ = nc.Flush()
			}
			return nil
		},
	}
	c.Flags().StringVar(&queue, "queue", "", "share the requests among the repliers of this group")
	c.Flags().IntVarP(&count, "count", "n", 0, "exit after this many requests (0: never)")
	return c
}

func topicCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "topic", Short: "Create and remove durable topics (JetStream streams)"}
	var replicas int
	var maxAge, maxBytes string
	create := &cobra.Command{
		Use:   "create NAME [--replicas 3] [--max-age 24h] [--max-bytes 1G]",
		Short: "Create a durable topic: the messages of subjects NAME and NAME.> are kept",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := msg.CheckTopic(args[0]); err != nil {
				return usageErr("%v", err)
			}
			spec := msg.TopicSpec{Name: args[0], Replicas: replicas}
			if maxAge != "" {
				d, err := time.ParseDuration(maxAge)
				if err != nil || d < 0 {
					return usageErr("--max-age %q: want a duration like 24h", maxAge)
				}
				spec.MaxAge = d
			}
			if maxBytes != "" {
				b, err := parseSize(maxBytes)
				if err != nil {
					return usageErr("--max-bytes: %v", err)
				}
				spec.MaxBytes = b
			}
			rep, err := e.topicCall(cmd.Context(), msg.OpTopicCreate, spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "topic %s created: subjects %s, %d replicas\n", rep.Topic.Name, strings.Join(rep.Topic.Subjects, " "), rep.Topic.Replicas)
			return nil
		},
	}
	create.Flags().IntVar(&replicas, "replicas", 1, "copies of the messages, on as many nodes (1-5)")
	create.Flags().StringVar(&maxAge, "max-age", "", "drop messages older than this (default: keep)")
	create.Flags().StringVar(&maxBytes, "max-bytes", "", "drop the oldest messages beyond this size, e.g. 1G (default: no cap but the node's)")
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a durable topic and its messages",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := e.topicCall(cmd.Context(), msg.OpTopicRm, msg.TopicSpec{Name: args[0]})
			return err
		},
	}
	c.AddCommand(create, rm, grantCmd(e, "grant"), grantCmd(e, "revoke"))
	return c
}

// grantCmd is `ssi topic grant|revoke USER SUBJECT` (admin).
func grantCmd(e *env, op string) *cobra.Command {
	var pubOnly, subOnly bool
	c := &cobra.Command{
		Use:   op + " USER SUBJECT [--pub-only | --sub-only]",
		Short: map[string]string{"grant": "Let USER publish and subscribe to SUBJECT of another user's namespace (admin)", "revoke": "Take back a grant (admin)"}[op],
		Long: `An admin's grant of another user's subject: SUBJECT is absolute, in one user's
namespace (u.alice.orders, u.alice.orders.>). It applies to the user's next
connections (a connection keeps the rights it was made with).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pubOnly && subOnly {
				return usageErr("--pub-only and --sub-only exclude each other")
			}
			if err := pki.CheckName(args[0]); err != nil {
				return usageErr("%v", err)
			}
			if err := msg.CheckGrantSubject(args[1]); err != nil {
				return usageErr("%v", err)
			}
			nc, err := e.natsDial(cmd.Context())
			if err != nil {
				return err
			}
			defer nc.Close()
			// A user's request is refused by the broker at once, but the
			// refusal comes as an asynchronous error: a short wait.
			rctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			_, err = nc.AdminCall(rctx, op, msg.GrantSpec{User: args[0], Subject: args[1], Pub: !subOnly, Sub: !pubOnly})
			if err != nil && nc.Err() != nil {
				return fmt.Errorf("%w (grants are an admin's)", nc.Err())
			}
			return err
		},
	}
	c.Flags().BoolVar(&pubOnly, "pub-only", false, "publishing only")
	c.Flags().BoolVar(&subOnly, "sub-only", false, "subscribing only")
	return c
}

func topicsCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "topics",
		Short: "List your durable topics: messages, bytes, durable subscriptions and their lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := e.topicCall(cmd.Context(), msg.OpTopicList, struct{}{})
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep.Topics)
			}
			if output != "" {
				return usageErr("-o %q: want json", output)
			}
			return printTopics(e.stdout, rep.Topics)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "json: machine-readable")
	return c
}

func printTopics(out io.Writer, ts []msg.TopicInfo) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tREPLICAS\tMESSAGES\tBYTES\tDURABLE\tLAG\tUNACKED")
	for _, t := range ts {
		if len(t.Consumers) == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t-\t-\t-\n", t.Name, t.Replicas, t.Messages, t.Bytes)
		}
		for _, c := range t.Consumers {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%d\n", t.Name, t.Replicas, t.Messages, t.Bytes, c.Name, c.Lag, c.AckPending)
		}
	}
	return tw.Flush()
}

func (e *env) topicCall(ctx context.Context, op string, req any) (msg.Reply, error) {
	nc, err := e.natsDial(ctx)
	if err != nil {
		return msg.Reply{}, err
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return nc.Call(rctx, op, req)
}
