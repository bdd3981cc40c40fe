package main

import (
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func dashboardCmd(e *env) *cobra.Command {
	var (
		open   bool
		output string
	)
	c := &cobra.Command{
		Use:   "dashboard [--open] [-o json]",
		Short: "Print a login link to the cluster's web dashboard",
		Long: `Every agent serves a web dashboard at https://AGENT/ui/: the nodes with their
live load, every process you may see (admins: all; users: their own), a job's
output, the migrations of the last hour split into their phases, and
migrate-by-drag: drop a process row on a node to move it there.

A browser has no client certificate, so this command asks the agent, as the
user of your config, for a one-time login link valid for 60 seconds. Opening
it gives the browser a session cookie that acts as you, with your role, for
12 hours (or until your certificate is revoked, or you log out). The link
is printed; --open also starts xdg-open on it.

The agent's certificate is signed by the cluster's CA, which the browser
does not know: import the CA (the "ca" of your config file, or
DATA-DIR/pki/ca.crt on a node) into the browser, or accept its warning.`,
		Example: `  ssi dashboard
  ssi dashboard --open`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return usageErr("dashboard: -o %q: want json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			l, err := cl.DashboardLogin(cmd.Context())
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, l)
			}
			fmt.Fprintln(e.stdout, l.URL)
			fmt.Fprintf(e.stderr, "ssi: open the link within %.0fs (it works once); the session lasts %s\n",
				time.Until(l.Expires).Seconds(), strings.TrimSuffix(strings.TrimSuffix(l.SessionTTL.String(), "0s"), "0m"))
			if open {
				xdg, err := exec.LookPath("xdg-open")
				if err != nil {
					fmt.Fprintln(e.stderr, "ssi: --open: no xdg-open on PATH; open the link yourself")
					return nil
				}
				if err := exec.Command(xdg, l.URL).Start(); err != nil {
					return fmt.Errorf("dashboard: start %s: %w", xdg, err)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&open, "open", false, "open the link with xdg-open")
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json (url, expires, session_ttl)")
	return c
}
