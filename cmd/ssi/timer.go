package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/service"
	"github.com/ssi-cluster/ssi/timer"
)

// timerUnit is a .timer file to apply, with the service it starts.
type timerUnit struct {
	unit timer.Unit
	req  api.TimerApplyRequest
}

// splitTimers parses the .timer files among files and the service each
// starts (Unit=, beside the timer file); it returns them and the files left
// to apply as services (a timer's service is not a service of its own).
func splitTimers(files []string, warn func(string)) ([]timerUnit, []string, error) {
	var timers []timerUnit
	used := map[string]bool{}
	for _, f := range files {
		if !strings.HasSuffix(f, ".timer") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		u, warns, err := timer.Parse(f, data)
		for _, w := range warns {
			warn(w.String())
		}
		if err != nil {
			return nil, nil, err
		}
		sf := filepath.Join(filepath.Dir(f), u.Spec.Unit)
		sdata, err := os.ReadFile(sf)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: the timer starts %s, which cannot be read: %w (put it beside the timer, or name another with Unit=)", f, u.Spec.Unit, err)
		}
		su, swarns, err := service.Parse(sf, sdata, "", os.ReadFile)
		for _, w := range swarns {
			warn(w.String())
		}
		if err != nil {
			return nil, nil, err
		}
		abs, _ := filepath.Abs(sf)
		used[abs] = true
		timers = append(timers, timerUnit{unit: u, req: api.TimerApplyRequest{Spec: u.Spec, Service: su.Spec,
			Source: map[string]string{filepath.Base(f): string(data), filepath.Base(sf): string(sdata)}}})
	}
	var rest []string
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		if !strings.HasSuffix(f, ".timer") && !used[abs] {
			rest = append(rest, f)
		}
	}
	return timers, rest, nil
}

func timersCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "timers",
		Short: "List timers (yours; an admin's: all), as systemctl list-timers",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageErr("timers: takes no arguments (ssi timer status NAME shows one)")
			}
			if output != "" && output != "json" {
				return usageErr("timers: -o %q: only json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			ts, err := cl.Timers(cmd.Context())
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, ts)
			}
			bw := bufio.NewWriter(e.stdout)
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NEXT\tLEFT\tLAST\tPASSED\tUNIT\tACTIVATES\tNODE\tEXIT")
			now := time.Now()
			for _, t := range ts {
				next, left := "-", "-"
				if !t.Next.IsZero() {
					next, left = stamp(t.Next), span(t.Next.Sub(now))
				}
				last, passed, node, exit := "-", "-", "-", "-"
				if l := t.Last; l != nil {
					last, passed, node, exit = stamp(l.Tick.Started), span(now.Sub(l.Tick.Started))+" ago", l.Tick.Node, runExit(*l)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", next, left, last, passed, t.Timer.Name+".timer", t.Timer.Spec.Unit, node, exit)
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return c
}

func timerCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "timer", Short: "Inspect, fire and remove a timer (see ssi apply NAME.timer)"}
	var output string
	status := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a timer's schedule and its last ticks: gpid, node, start, end, exit",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("timer status: want one timer name (see 'ssi timer status --help')")
			}
			if output != "" && output != "json" {
				return usageErr("timer status: -o %q: only json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			info, err := cl.Timer(cmd.Context(), strings.TrimSuffix(args[0], ".timer"))
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, info)
			}
			printTimer(e, info)
			return nil
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	run := &cobra.Command{
		Use:   "run NAME",
		Short: "Fire a timer now: its service runs once, on a node placement picks",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("timer run: want one timer name (see 'ssi timer run --help')")
			}
			if output != "" && output != "json" {
				return usageErr("timer run: -o %q: only json", output)
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			tick, err := cl.RunTimer(cmd.Context(), strings.TrimSuffix(args[0], ".timer"))
			if err != nil {
				return explain(err, src)
			}
			if output == "json" {
				return writeJSONOut(e.stdout, tick)
			}
			fmt.Fprintf(e.stdout, "%s: fired (gpid %d); ssi timer status %s shows where it runs\n", tick.Timer, tick.GPID, tick.Timer)
			return nil
		},
	}
	run.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a timer (a run that runs goes on)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("timer rm: want one timer name (see 'ssi timer rm --help')")
			}
			cl, src, err := e.client()
			if err != nil {
				return err
			}
			name := strings.TrimSuffix(args[0], ".timer")
			if err := cl.RemoveTimer(cmd.Context(), name); err != nil {
				return explain(err, src)
			}
			fmt.Fprintf(e.stdout, "%s: removed\n", name)
			return nil
		},
	}
	c.AddCommand(status, run, rm)
	return c
}

func printTimer(e *env, info api.TimerInfo) {
	t := info.Timer
	w := e.stdout
	fmt.Fprintf(w, "%s.timer → %s (owner %s, generation %d)\n", t.Name, t.Spec.Unit, t.Owner, t.Generation)
	var trig []string
	for _, c := range t.Spec.OnCalendar {
		trig = append(trig, "OnCalendar="+c)
	}
	if t.Spec.Schedule != "" {
		trig = append(trig, "Schedule="+t.Spec.Schedule)
	}
	for _, r := range []struct {
		n string
		d time.Duration
	}{{"OnActiveSec", t.Spec.OnActive}, {"OnUnitActiveSec", t.Spec.OnUnitActive}, {"OnUnitInactiveSec", t.Spec.OnUnitInactive}, {"RandomizedDelaySec", t.Spec.RandomizedDelay}} {
		if r.d > 0 {
			trig = append(trig, r.n+"="+r.d.String())
		}
	}
	fmt.Fprintf(w, "  Trigger: %s\n", strings.Join(trig, "; "))
	fmt.Fprintf(w, "  Overlap=%s Persistent=%v MissAfter=%s\n", t.Spec.Overlap, t.Spec.Persistent, t.Spec.MissAfter)
	if !info.Next.IsZero() {
		fmt.Fprintf(w, "  Next: %s (in %s)\n", stamp(info.Next), span(time.Until(info.Next)))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TICK\tSTATE\tGPID\tNODE\tSTART\tEND\tEXIT\tNOTE")
	for _, r := range info.Runs {
		tk := r.Tick
		gpid, start, end := "-", "-", "-"
		if tk.GPID != 0 && tk.State != pidtable.TickSkipped && tk.State != pidtable.TickMissed {
			gpid = strconv.FormatUint(tk.GPID, 10)
		}
		if !tk.Started.IsZero() {
			start = stamp(tk.Started)
		}
		if !r.Ended.IsZero() {
			end = stamp(r.Ended)
		}
		node := tk.Node
		if node == "" {
			node = "-"
		}
		note := tk.Reason
		switch {
		case tk.CatchUp:
			note = "caught up (Persistent=true)"
		case tk.Manual:
			note = "ssi timer run"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", stamp(tk.Scheduled), tk.State, gpid, node, start, end, runExit(r), note)
	}
	tw.Flush()
}

// runExit is a run's exit status, or what it is instead.
func runExit(r api.TimerRun) string {
	switch {
	case r.ExitCode != nil:
		return strconv.Itoa(*r.ExitCode)
	case r.Tick.State != pidtable.TickStarted:
		return "-"
	case r.State == "":
		return "no record"
	case r.State.Ended():
		return string(r.State)
	}
	return "running"
}

// stamp is a local time as systemctl list-timers prints it.
func stamp(t time.Time) string { return t.Local().Format("Mon 2006-01-02 15:04:05 MST") }

// span is a short duration: 4s, 2min 3s, 1h 5min, 2 days.
func span(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dmin %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dmin", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}
