package main

import (
	"github.com/ssi-cluster/ssi/internal/testenv"

	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/calendar"
	"github.com/ssi-cluster/ssi/service"
	"github.com/ssi-cluster/ssi/timer"
)

func TestOnCalendar(t *testing.T) {
	for _, tt := range []struct {
		period int
		off    time.Duration
		want   string
	}{
		{5, 0, "*-*-* *:00/5:00.000"},
		{5, 299700 * time.Millisecond, "*-*-* *:04/5:59.700"},
		{1, 1500 * time.Millisecond, "*-*-* *:*:01.500"},
		{60, 61 * time.Second, "*-*-* *:01:01.000"},
	} {
		if got := onCalendar(tt.period, tt.off); got != tt.want {
			t.Errorf("onCalendar(%d, %s) = %q, want %q", tt.period, tt.off, got, tt.want)
		}
	}
	if got := offset(999, 1000, 5*time.Minute); got != 299700*time.Millisecond {
		t.Errorf("offset(999) = %s", got)
	}
}

// TestUnits: the unit files parse as ssi apply parses them, the service
// runs the shell line meant, and the timers' next elapses are spread over
// the period as meant.
func TestUnits(t *testing.T) {
	dir := t.TempDir()
	const n, period = 1000, 5
	if err := writeUnits(dir, n, period, "/tmp/x/runs.log"); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 8, 0, 0, 0, 0, time.Local) // a period boundary
	for _, i := range []int{0, 1, 2, 499, 999} {
		name := timerName(i)
		data, err := os.ReadFile(filepath.Join(dir, name+".timer"))
		if err != nil {
			t.Fatal(err)
		}
		u, warns, err := timer.Parse(filepath.Join(dir, name+".timer"), data)
		if err != nil || len(warns) != 0 {
			t.Fatalf("%s.timer: %v, warnings %v", name, err, warns)
		}
		if len(u.Spec.OnCalendar) != 1 {
			t.Fatalf("%s.timer: OnCalendar %v", name, u.Spec.OnCalendar)
		}
		spec, err := calendar.Parse(u.Spec.OnCalendar[0])
		if err != nil {
			t.Fatal(err)
		}
		want := base.Add(offset(i, n, period*time.Minute))
		if got := spec.Next(base.Add(-time.Millisecond)); !got.Equal(want) {
			t.Errorf("%s: next elapse after the boundary %s, want %s", name, got, want)
		}
		if got := spec.Next(want); !got.Equal(want.Add(period * time.Minute)) {
			t.Errorf("%s: the elapse after %s is %s, want one period later", name, want, got)
		}
		sf := filepath.Join(dir, u.Spec.Unit)
		sdata, err := os.ReadFile(sf)
		if err != nil {
			t.Fatalf("%s starts %s: %v", name, u.Spec.Unit, err)
		}
		su, swarns, err := service.Parse(sf, sdata, "", os.ReadFile)
		if err != nil || len(swarns) != 0 {
			t.Fatalf("%s: %v, warnings %v", sf, err, swarns)
		}
		argv := su.Spec.Argv
		if want := `echo ${SSI_TIMER} ${SSI_TIMER_TICK} $(date +%s.%N) >> /tmp/x/runs.log`; len(argv) != 3 || argv[0] != "/bin/sh" || argv[2] != want {
			t.Errorf("%s: argv %q, want [/bin/sh -c %q]", sf, argv, want)
		}
	}
}

func TestParseRunLog(t *testing.T) {
	lines, bad := parseRunLog("bt00001 2026-12-08T00:05:00.3Z 1796688300.512345678\n\nbt00002 bad 1\nbt3 2026-12-08T00:05:00Z 1796688300.5\nshort line\n")
	if bad != 2 || len(lines) != 2 {
		t.Fatalf("lines %v, bad %d", lines, bad)
	}
	if d := lines[0].ran.Sub(lines[0].scheduled); d != 212345678*time.Nanosecond || lines[0].timer != "bt00001" {
		t.Errorf("line 0 %+v: delay %s", lines[0], d)
	}
	if d := lines[1].ran.Sub(lines[1].scheduled); d != 500*time.Millisecond {
		t.Errorf("line 1: delay %s", d)
	}
}

func TestParseFlagsBadInput(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "parseFlags refuses non-root")
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-name", "sbench"}, "must start with sbm"},
		{[]string{"-period", "7"}, "divisor of 60"},
		{[]string{"-timers", "0"}, "-timers 0"},
		{[]string{"-window", "1s"}, "-window"},
	} {
		if _, err := parseFlags(flag.NewFlagSet("x", flag.ContinueOnError), tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q) = %v, want an error with %q", tt.args, err, tt.want)
		}
	}
	o, err := parseFlags(flag.NewFlagSet("x", flag.ContinueOnError), nil)
	if err != nil || o.window != 5*time.Minute || o.timers != 1000 {
		t.Errorf("defaults %+v, %v", o, err)
	}
}
