package main

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/ssi-cluster/ssi/internal/display"
)

// addCompletions makes the shell completions (ssi completion bash|zsh|fish)
// complete gpids and node names by asking the cluster: the arguments of
// kill, logs, wait, checkpoint and migrate, and the --node flags.
func addCompletions(root *cobra.Command, e *env) {
	gpids := func(many bool) cobra.CompletionFunc {
		return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if !many && len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeGPIDs(cmd.Context(), e, args), cobra.ShellCompDirectiveNoFileComp
		}
	}
	nodes := func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return completeNodes(cmd.Context(), e), cobra.ShellCompDirectiveNoFileComp
	}
	for _, c := range root.Commands() {
		switch c.Name() {
		case "kill", "wait":
			c.ValidArgsFunction = gpids(true)
		case "logs", "checkpoint":
			c.ValidArgsFunction = gpids(false)
		case "migrate":
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, s string) ([]cobra.Completion, cobra.ShellCompDirective) {
				switch len(args) {
				case 0:
					return gpids(false)(cmd, args, s)
				case 1:
					return nodes(cmd, args, s)
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		if c.Flags().Lookup("node") != nil {
			_ = c.RegisterFlagCompletionFunc("node", nodes)
		}
	}
}

// completeGPIDs lists the caller's visible live jobs as "GPID<TAB>node: command"
// (shells that show descriptions show the second part), leaving out those
// already on the command line. Errors complete nothing: a completion must not
// print.
func completeGPIDs(ctx context.Context, e *env, skip []string) []cobra.Completion {
	cl, _, err := e.client()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	procs, err := cl.PS(ctx, "", false)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, p := range procs {
		g := strconv.FormatUint(p.GPID, 10)
		if slices.Contains(skip, g) {
			continue
		}
		desc := p.Node + ": " + display.CommandLine(p.Argv)
		if len(desc) > 60 {
			desc = desc[:57] + "..."
		}
		out = append(out, cobra.CompletionWithDesc(g, desc))
	}
	return out
}

// completeNodes lists the nodes as "NAME<TAB>Ready|NotReady, N jobs".
func completeNodes(ctx context.Context, e *env) []cobra.Completion {
	cl, _, err := e.client()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, n := range nodes {
		status := "NotReady"
		if n.Ready {
			status = "Ready"
		}
		out = append(out, cobra.CompletionWithDesc(n.Name, status+", "+strconv.Itoa(n.Jobs)+" jobs"))
	}
	return out
}
