package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/localcluster"
)

func localCmd(e *env) *cobra.Command {
	var cfg localcluster.Config
	c := &cobra.Command{
		Use:   "local",
		Short: "Run a whole cluster on this machine (network namespaces as nodes)",
		Long: `Manage a local cluster: one network namespace per node joined by a bridge,
one agent in each, the first running the embedded etcd (with --etcd-members 3,
node1 to node3 each run a member of a 3-member etcd, which survives the loss of
any one). 'make up' and 'make down' call these. Needs root.`,
	}
	c.PersistentFlags().StringVar(&cfg.Name, "name", "ssi", "cluster name, prefix of its namespaces and links")
	c.PersistentFlags().StringVar(&cfg.StateDir, "state-dir", "/run/ssi-local", "where cluster state files are kept")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the local cluster (harmless if it is already up)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := localcluster.CheckEtcdMembers(cfg.EtcdMembers, cfg.Nodes); err != nil {
				return usageErr("local up: %v; nothing was started", err)
			}
			if os.Geteuid() != 0 {
				return fmt.Errorf("local up: needs root (network namespaces, cgroups)")
			}
			if cfg.Binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("local up: find own binary: %w", err)
				}
				cfg.Binary = exe
			}
			if cfg.DataDir == "" {
				cfg.DataDir = filepath.Join("/var/lib/ssi-local", cfg.Name)
			}
			cfg.Log = slog.New(slog.NewTextHandler(e.stderr, nil))
			st, outcome, err := localcluster.Up(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "cluster %s %s: %d nodes, endpoint %s", st.Name, outcome, len(st.Nodes), st.Endpoint())
			if st.ConfigFile != "" {
				fmt.Fprintf(e.stdout, " (written to %s)", st.ConfigFile)
			}
			fmt.Fprintln(e.stdout)
			for _, n := range st.Nodes {
				fmt.Fprintf(e.stdout, "  %s  %s  netns %s  agent pid %d  log %s\n", n.Name, n.API(), n.Namespace, n.Agent.PID, filepath.Join(n.DataDir, "agent.log"))
			}
			printEtcd(cmd.Context(), e, st)
			return nil
		},
	}
	up.Flags().IntVar(&cfg.Nodes, "nodes", 3, "number of nodes")
	up.Flags().IntVar(&cfg.EtcdMembers, "etcd-members", 1, "etcd members, embedded in the agents of node1, node2, ...: 1, or 3 to survive the loss of any one (odd, at most --nodes)")
	up.Flags().StringVar(&cfg.Subnet, "subnet", "10.210.0.0/24", "IPv4 subnet of the cluster network")
	up.Flags().StringVar(&cfg.Binary, "binary", "", "ssi binary for the agents (default: this one)")
	up.Flags().StringVar(&cfg.DataDir, "data-dir", "", "parent of the nodes' data dirs (default /var/lib/ssi-local/NAME)")
	up.Flags().StringVar(&cfg.ConfigFile, "write-config", "/etc/ssi/config.json", "write the CLI config here ('' to skip)")
	up.Flags().StringArrayVar(&cfg.AgentArgs, "agent-arg", nil, "extra flag for every agent; repeatable")
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the local cluster and remove everything it made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("local down: needs root")
			}
			if err := localcluster.Down(cmd.Context(), cfg.StateDir, cfg.Name, nil); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "cluster %s is down\n", cfg.Name)
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Say whether the local cluster is up",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := localcluster.Load(cfg.StateDir, cfg.Name)
			if err != nil {
				return fmt.Errorf("cluster %s is not up (%w); start it with 'make up'", cfg.Name, err)
			}
			if !st.Healthy(cmd.Context()) {
				printEtcd(cmd.Context(), e, st)
				return fmt.Errorf("cluster %s is broken (an agent is down); 'make up' restarts it", cfg.Name)
			}
			fmt.Fprintf(e.stdout, "cluster %s is up: %d nodes, endpoint %s\n", st.Name, len(st.Nodes), st.Endpoint())
			printEtcd(cmd.Context(), e, st)
			return nil
		},
	}
	c.AddCommand(up, down, status)
	return c
}

// printEtcd prints the local cluster's etcd members and their health.
func printEtcd(ctx context.Context, e *env, st *localcluster.State) {
	members, err := st.EtcdStatus(ctx)
	if err != nil {
		fmt.Fprintf(e.stdout, "etcd: %v\n", err)
		return
	}
	healthy := 0
	for _, m := range members {
		if m.Healthy && !m.Learner {
			healthy++
		}
	}
	fmt.Fprintf(e.stdout, "etcd: %d members, %d healthy voting (quorum %d)\n", len(members), healthy, len(members)/2+1)
	for _, m := range members {
		name, state := m.Name, "healthy"
		if !m.Started() {
			name = "(not started)"
		}
		switch {
		case !m.Healthy:
			state = "unhealthy: " + m.Err
		case m.Leader:
			state = "healthy, leader"
		}
		if m.Learner {
			state += ", learner (no vote yet)"
		}
		fmt.Fprintf(e.stdout, "  %-8s %x  %s  %s\n", name, m.ID, strings.Join(m.ClientURLs, ","), state)
	}
}
