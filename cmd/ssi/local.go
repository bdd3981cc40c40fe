package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/localcluster"
)

func localCmd(e *env) *cobra.Command {
	var cfg localcluster.Config
	c := &cobra.Command{
		Use:   "local",
		Short: "Run a whole cluster on this machine (network namespaces as nodes)",
		Long: `Manage a local cluster: one network namespace per node joined by a bridge,
one agent in each, the first running the embedded etcd. 'make up' and 'make
down' call these. Needs root.`,
	}
	c.PersistentFlags().StringVar(&cfg.Name, "name", "ssi", "cluster name, prefix of its namespaces and links")
	c.PersistentFlags().StringVar(&cfg.StateDir, "state-dir", "/run/ssi-local", "where cluster state files are kept")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the local cluster (harmless if it is already up)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			return nil
		},
	}
	up.Flags().IntVar(&cfg.Nodes, "nodes", 3, "number of nodes")
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
				return fmt.Errorf("cluster %s is broken (an agent is down); 'make up' restarts it", cfg.Name)
			}
			fmt.Fprintf(e.stdout, "cluster %s is up: %d nodes, endpoint %s\n", st.Name, len(st.Nodes), st.Endpoint())
			return nil
		},
	}
	c.AddCommand(up, down, status)
	return c
}
