package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/agent"
	"github.com/ssi-cluster/ssi/nodes"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/pki"
	"github.com/ssi-cluster/ssi/placement"
)

func agentCmd(e *env) *cobra.Command {
	var (
		cfg       agent.Config
		memory    string
		labels    []string
		policy    string
		logLevel  string
		logFormat string
		balancer  bool
		noDrain   bool
		withNATS  bool
		hollowF   hollowFlags
	)
	c := &cobra.Command{
		Use:   "agent --name NAME --listen HOST:PORT --data-dir DIR [--join ADDR --token TOKEN] [--etcd-endpoints URLS]",
		Short: "Run the node agent",
		Long: `Run the node agent of this machine. Without --etcd-endpoints it also runs an
embedded single-member etcd on the advertised address (ports 2379/2380): start
the first node that way and point the others at it, or point every agent at an
external etcd cluster. With --etcd-member an agent joins the cluster's etcd as
one more member (embedded in it, on ports 2379/2380): the first node and two
joined with --etcd-member make a 3-member etcd that survives the loss of any
one of them. Jobs survive a restart of their agent.

Everything is mutual TLS. The first agent (no --join) creates the cluster CA in
DATA-DIR/pki (ca.key, mode 0600: protect it) and an admin config,
DATA-DIR/pki/admin.json. Other agents join once with --join ADDR --token TOKEN
(an admin prints a token with 'ssi token create') and keep their certificate in
DATA-DIR/pki; restarts need no token.

On SIGTERM (or SIGINT) the agent first drains its node: it cordons it and
moves its jobs to other nodes by live migration (as ssi node drain does), for
at most --drain-timeout, then marks the node Left (ssi nodes shows Left, not
NotReady) and stops; what could not move keeps running under its shims. A
second signal stops it at once. With --no-drain it stops at once: the jobs
keep running and are adopted when the agent starts again. SIGUSR2 stops it at
once whatever --no-drain says: a restart in place, to upgrade the binary
(README, "Upgrading a cluster"). Started again, the agent lifts the cordon and
the Left mark of its stop.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return usageErr("agent: --log-level %q: want debug, info, warn or error", logLevel)
			}
			opts := &slog.HandlerOptions{Level: lvl}
			switch logFormat {
			case "text":
				cfg.Log = slog.New(slog.NewTextHandler(e.stderr, opts))
			case "json":
				cfg.Log = slog.New(slog.NewJSONHandler(e.stderr, opts))
			default:
				return usageErr("agent: --log-format %q: want text or json", logFormat)
			}
			if memory != "" {
				m, err := parseSize(memory)
				if err != nil {
					return usageErr("agent: --memory: %v", err)
				}
				cfg.Memory = m
			}
			if cfg.Labels, err = parseLabels("agent: --label", labels); err != nil {
				return err
			}
			if hollowF.nodes != 0 {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return runHollow(ctx, hollowF, hollowConfig{
					listen: cfg.Listen, advertise: cfg.Advertise, dataDir: cfg.DataDir, endpoints: cfg.EtcdEndpoints,
					insecure: cfg.Insecure, cpus: cfg.CPUs, memory: cfg.Memory, labels: cfg.Labels,
					retention: cfg.Retention, dialTimeout: cfg.EtcdDialTimeout, log: cfg.Log,
				})
			}
			cfg.Placement = placement.Policy(policy)
			cfg.NoBalancer = !balancer
			cfg.NoNATS = !withNATS
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("agent: find own binary: %w", err)
			}
			if cfg.ShimExe == "" {
				cfg.ShimExe = filepath.Join(filepath.Dir(exe), "ssi-shim")
			}
			cfg.Version = version
			var stopping, drained chan struct{}
			if !noDrain {
				stopping, drained = make(chan struct{}), make(chan struct{})
				cfg.Stopping, cfg.Drained = stopping, drained
			}
			a, err := agent.New(cfg)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			// The first signal drains the node (unless --no-drain), then
			// stops the agent; a second one stops it at once. SIGUSR2
			// stops it at once, its jobs kept here (a restart in place).
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			inPlace := make(chan os.Signal, 1)
			signal.Notify(inPlace, syscall.SIGUSR2)
			defer signal.Stop(inPlace)
			ctx, cancel := context.WithCancel(context.WithoutCancel(cmd.Context()))
			defer cancel()
			go func() {
				select {
				case <-sigs:
				case <-inPlace:
					cfg.Log.Info("stopping without draining (SIGUSR2): the jobs keep running here, adopted when the agent starts again")
					cancel()
					return
				case <-cmd.Context().Done():
				case <-ctx.Done():
					return
				}
				if stopping != nil {
					cfg.Log.Info("stopping: draining the node first (--drain-timeout; a second signal stops at once, --no-drain skips this)", "timeout", cfg.DrainTimeout)
					close(stopping)
					select {
					case <-drained:
					case <-sigs:
					case <-inPlace:
					case <-ctx.Done():
					}
				}
				cancel()
			}()
			return a.Run(ctx)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Name, "name", "", "node name, unique in the cluster (required)")
	f.StringVar(&cfg.Listen, "listen", "", "API listen address HOST:PORT (required)")
	f.StringVar(&cfg.Advertise, "advertise", "", "API address others use (default: --listen)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for job state and output, and the embedded etcd (required)")
	f.StringSliceVar(&cfg.EtcdEndpoints, "etcd-endpoints", nil, "external etcd client URLs; empty: run an embedded etcd")
	f.BoolVar(&cfg.EtcdMember, "etcd-member", false, "run a member of the cluster's etcd in this agent: on the first start, join the etcd reached through --join or --etcd-endpoints as a new member (use 3 members in all, or 5); later starts restart the member from --data-dir")
	f.StringVar(&cfg.EtcdClientURL, "etcd-client-url", "", "embedded etcd member's client URL (default https://ADVERTISE-HOST:2379)")
	f.StringVar(&cfg.EtcdPeerURL, "etcd-peer-url", "", "embedded etcd member's peer URL (default https://ADVERTISE-HOST:2380)")
	f.DurationVar(&cfg.EtcdDialTimeout, "etcd-dial-timeout", 5*time.Second, "give up reaching etcd at start after this long")
	f.Float64Var(&cfg.CPUs, "cpus", 0, "CPUs offered to jobs (default: all)")
	f.StringVar(&memory, "memory", "", "memory offered to jobs (default: all), e.g. 16G")
	f.StringVar(&cfg.CPUSet, "cpuset", "", "confine every job to these CPUs, a list such as 0, 0-1 or 0,2 (default: all); --cpus then defaults to their number")
	f.BoolVar(&balancer, "balancer", true, "take part in the elections of the agents that move jobs for the cluster: the balancer's leader (on/off for the cluster: ssi balance on|off) and the drain controller (ssi node drain)")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", time.Minute, "on SIGTERM, how long the agent may take to move its node's jobs away before it stops (keep it below systemd's TimeoutStopSec)")
	f.BoolVar(&noDrain, "no-drain", false, "on SIGTERM, stop at once: the jobs keep running here and are adopted when the agent starts again")
	f.StringArrayVar(&labels, "label", nil, "node label KEY=VALUE for --constraint; repeatable")
	f.StringVar(&policy, "placement", "random", "default placement policy: random, least-loaded or two-choices")
	f.StringVar(&cfg.ShimExe, "shim-binary", "", "the ssi-shim binary (default: ssi-shim beside this binary)")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "/ssi", "cgroup under which job cgroups (NODE/GPID) are created")
	f.DurationVar(&cfg.Retention, "retention", time.Hour, "how long ended jobs stay in the live table, with their output; then their records are archived")
	f.DurationVar(&cfg.LeftRetention, "left-retention", nodes.DefaultLeftRetention, "how long a node that left (its agent drained it and stopped: Left in ssi nodes) stays listed before it is removed by itself, if it has not come back and runs no job; 0: never (the elected agent's value applies)")
	f.DurationVar(&cfg.History, "history", pidtable.DefaultHistory, "how long archived records of ended jobs are kept (ssi wait, ssi ps --exited find them)")
	f.StringVar(&cfg.Join, "join", "", "join a cluster through the agent at HOST:PORT (with --token)")
	f.StringVar(&cfg.Token, "token", "", "join token from 'ssi token create' (with --join)")
	f.BoolVar(&cfg.InitCA, "init-ca", false, "create a new cluster CA even with --etcd-endpoints (first agent of a cluster on an external etcd)")
	f.DurationVar(&cfg.NodeCertLifetime, "node-cert-lifetime", pki.NodeLifetime, "lifetime of this node's certificate when it renews it (with a third left, without a restart)")
	f.StringVar(&cfg.AdminUser, "admin-user", "root", "first agent of a cluster: the admin whose config it writes to DATA-DIR/pki/admin.json")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at http://HOST:PORT/metrics, plain HTTP without authentication: bind it to localhost or a management network (default: off; admins and nodes can also GET /v1/metrics on the API port)")
	f.StringVar(&cfg.NATSListen, "nats-listen", "", "the embedded NATS broker's client listener HOST:PORT (default: --listen's host, its port+2)")
	f.StringVar(&cfg.NATSClusterListen, "nats-cluster-listen", "", "the broker's route listener to the other agents' HOST:PORT (default: --listen's host, its port+3; every agent must use the same offsets)")
	f.Int64Var(&cfg.NATSMaxStore, "nats-max-store", 1<<30, "bytes of disk the broker's durable topics may use on this node (JetStream, under DATA-DIR/nats)")
	f.Int64Var(&cfg.NATSMaxMemory, "nats-max-memory", 64<<20, "bytes of memory the broker's in-memory streams may use on this node")
	f.BoolVar(&withNATS, "nats", true, "run the embedded NATS broker (ssi pub, sub, topics); --nats=false turns it off")
	f.BoolVar(&cfg.Insecure, "insecure", false, "DEBUGGING ONLY: no TLS, no authentication; any client can run anything as any user, root included")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	hollowF.register(f)
	return c
}
