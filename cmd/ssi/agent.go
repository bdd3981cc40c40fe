package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/agent"
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
	)
	c := &cobra.Command{
		Use:   "agent --name NAME --listen HOST:PORT --data-dir DIR [--join ADDR --token TOKEN] [--etcd-endpoints URLS]",
		Short: "Run the node agent",
		Long: `Run the node agent of this machine. Without --etcd-endpoints it also runs an
embedded single-member etcd on the advertised address (ports 2379/2380): start
the first node that way and point the others at it, or point every agent at an
external etcd cluster. Jobs survive a restart of their agent.

Everything is mutual TLS. The first agent (no --join) creates the cluster CA in
DATA-DIR/pki (ca.key, mode 0600: protect it) and an admin config,
DATA-DIR/pki/admin.json. Other agents join once with --join ADDR --token TOKEN
(an admin prints a token with 'ssi token create') and keep their certificate in
DATA-DIR/pki; restarts need no token.`,
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
			cfg.Placement = placement.Policy(policy)
			cfg.NoBalancer = !balancer
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("agent: find own binary: %w", err)
			}
			if cfg.ShimExe == "" {
				cfg.ShimExe = filepath.Join(filepath.Dir(exe), "ssi-shim")
			}
			cfg.Version = version
			a, err := agent.New(cfg)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Name, "name", "", "node name, unique in the cluster (required)")
	f.StringVar(&cfg.Listen, "listen", "", "API listen address HOST:PORT (required)")
	f.StringVar(&cfg.Advertise, "advertise", "", "API address others use (default: --listen)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for job state and output, and the embedded etcd (required)")
	f.StringSliceVar(&cfg.EtcdEndpoints, "etcd-endpoints", nil, "external etcd client URLs; empty: run an embedded etcd")
	f.StringVar(&cfg.EtcdClientURL, "etcd-client-url", "", "embedded etcd client URL (default https://ADVERTISE-HOST:2379)")
	f.StringVar(&cfg.EtcdPeerURL, "etcd-peer-url", "", "embedded etcd peer URL (default https://ADVERTISE-HOST:2380)")
	f.DurationVar(&cfg.EtcdDialTimeout, "etcd-dial-timeout", 5*time.Second, "give up reaching etcd at start after this long")
	f.Float64Var(&cfg.CPUs, "cpus", 0, "CPUs offered to jobs (default: all)")
	f.StringVar(&memory, "memory", "", "memory offered to jobs (default: all), e.g. 16G")
	f.StringVar(&cfg.CPUSet, "cpuset", "", "confine every job to these CPUs, a list such as 0, 0-1 or 0,2 (default: all); --cpus then defaults to their number")
	f.BoolVar(&balancer, "balancer", true, "take part in the election of the balancer's leader (on/off for the cluster: ssi balance on|off)")
	f.StringArrayVar(&labels, "label", nil, "node label KEY=VALUE for --constraint; repeatable")
	f.StringVar(&policy, "placement", "random", "default placement policy: random, least-loaded or two-choices")
	f.StringVar(&cfg.ShimExe, "shim-binary", "", "the ssi-shim binary (default: ssi-shim beside this binary)")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "/ssi", "cgroup under which job cgroups (NODE/GPID) are created")
	f.DurationVar(&cfg.Retention, "retention", time.Hour, "how long ended jobs and their output are kept")
	f.StringVar(&cfg.Join, "join", "", "join a cluster through the agent at HOST:PORT (with --token)")
	f.StringVar(&cfg.Token, "token", "", "join token from 'ssi token create' (with --join)")
	f.BoolVar(&cfg.InitCA, "init-ca", false, "create a new cluster CA even with --etcd-endpoints (first agent of a cluster on an external etcd)")
	f.DurationVar(&cfg.NodeCertLifetime, "node-cert-lifetime", pki.NodeLifetime, "lifetime of this node's certificate when it renews it (with a third left, without a restart)")
	f.StringVar(&cfg.AdminUser, "admin-user", "root", "first agent of a cluster: the admin whose config it writes to DATA-DIR/pki/admin.json")
	f.BoolVar(&cfg.Insecure, "insecure", false, "DEBUGGING ONLY: no TLS, no authentication; any client can run anything as any user, root included")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return c
}
