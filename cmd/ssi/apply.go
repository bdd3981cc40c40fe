package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/service"
)

func applyCmd(e *env) *cobra.Command {
	var instances string
	var now bool
	c := &cobra.Command{
		Use:   "apply FILE.service|FILE.timer|DIR... [--instances 1..8] [--now]",
		Short: "Create or update services from systemd unit files",
		Long: `Read systemd .service units (a directory: every *.service in it) and create
or update one service per unit, kept at [X-SSI] Replicas= replicas across the
cluster's nodes. Every file is parsed first: a malformed unit is reported with
its file:line and nothing is applied. Directives ssi ignores are warned about
(file:line). Applying an unchanged file changes nothing; a changed one updates
the service in place, replacing its replicas one at a time (--now: all at once).
A template unit (NAME@.service) needs --instances: 1..8 or a,b,c.

A .timer unit creates or updates a timer (ssi timers): its service (Unit=,
default NAME.service, read from beside the timer file) runs once per tick on a
node placement picks; that service is not applied as a service of its own.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("apply: no unit file or directory given")
			}
			insts, err := parseInstances(instances)
			if err != nil {
				return usageErr("apply: --instances %q: %v", instances, err)
			}
			files, err := unitFiles(args)
			if err != nil {
				return usageErr("apply: %v", err)
			}
			timers, files, err := splitTimers(files, func(w string) { fmt.Fprintf(e.stderr, "warning: %s\n", w) })
			if err != nil {
				return fmt.Errorf("%w; nothing was applied", err)
			}
			var units []service.Unit
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("apply: %w", err)
				}
				_, template, err := service.UnitName(f)
				if err != nil {
					return err
				}
				list := []string{""}
				if template {
					list = insts
					if len(list) == 0 {
						list = []string{""} // Parse explains
					}
				}
				for _, inst := range list {
					u, warns, err := service.Parse(f, data, inst, os.ReadFile)
					for _, w := range warns {
						fmt.Fprintf(e.stderr, "warning: %s\n", w)
					}
					if err != nil {
						return fmt.Errorf("%w; nothing was applied", err)
					}
					units = append(units, u)
				}
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			for _, u := range units {
				resp, err := cl.Apply(cmd.Context(), u.Name, api.ApplyRequest{Spec: u.Spec, Source: filepath.Base(u.File), Now: now})
				if err != nil {
					return explain(fmt.Errorf("apply %s: %w", u.Name, err), src)
				}
				how := ""
				switch {
				case resp.Action == "created":
					how = fmt.Sprintf(" (%d replicas)", u.Spec.Replicas)
				case resp.Action == "updated" && resp.Rolling && now:
					how = " (replacing every replica now)"
				case resp.Action == "updated" && resp.Rolling:
					how = " (rolling: one replica at a time)"
				case resp.Action == "updated":
					how = " (replicas kept)"
				}
				fmt.Fprintf(e.stdout, "%s: %s%s\n", u.Name, resp.Action, how)
			}
			for _, t := range timers {
				resp, err := cl.ApplyTimer(cmd.Context(), t.unit.Name, t.req)
				if err != nil {
					return explain(fmt.Errorf("apply %s.timer: %w", t.unit.Name, err), src)
				}
				fmt.Fprintf(e.stdout, "%s.timer: %s (activates %s)\n", t.unit.Name, resp.Action, t.unit.Spec.Unit)
			}
			return nil
		},
	}
	c.Flags().StringVar(&instances, "instances", "", "instances of a template unit: 1..8, or a,b,c")
	c.Flags().BoolVar(&now, "now", false, "on a change, replace every replica at once instead of one at a time")
	return c
}

// unitFiles expands directories into their *.service files.
func unitFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		m, _ := filepath.Glob(filepath.Join(a, "*.service"))
		t, _ := filepath.Glob(filepath.Join(a, "*.timer"))
		m = append(m, t...)
		if len(m) == 0 {
			return nil, fmt.Errorf("%s: no *.service or *.timer files", a)
		}
		sort.Strings(m)
		out = append(out, m...)
	}
	return out, nil
}

// parseInstances reads 1..8 or a,b,c.
func parseInstances(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if lo, hi, ok := strings.Cut(s, ".."); ok {
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a > b || b-a >= service.MaxReplicas {
			return nil, fmt.Errorf("want FROM..TO with FROM <= TO, at most %d instances", service.MaxReplicas)
		}
		var out []string
		for i := a; i <= b; i++ {
			out = append(out, strconv.Itoa(i))
		}
		return out, nil
	}
	return strings.Split(s, ","), nil
}
