package timer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/service"
)

func TestParse(t *testing.T) {
	u, warns, err := Parse("/x/nightly.timer", []byte(`[Unit]
Description=nightly backup

[Timer]
OnCalendar=Mon..Fri *-*-* 02:00
OnCalendar=Sat 04:00 Europe/Berlin
OnBootSec=5min
RandomizedDelaySec=10min
AccuracySec=1s
Persistent=yes
Unit=backup.service

[X-SSI]
Schedule=*/15 * * * *
Overlap=queue
MissAfter=2min

[Install]
WantedBy=timers.target
`))
	if err != nil {
		t.Fatal(err)
	}
	s := u.Spec
	if u.Name != "nightly" || len(s.OnCalendar) != 2 || s.Schedule != "*/15 * * * *" || s.Overlap != OverlapQueue || !s.Persistent ||
		s.RandomizedDelay != 10*time.Minute || s.Accuracy != time.Second || s.Unit != "backup.service" || s.MissAfter != 2*time.Minute {
		t.Fatalf("spec %+v", s)
	}
	if len(warns) != 1 || warns[0].Line != 7 || !strings.Contains(warns[0].Msg, "OnBootSec") {
		t.Fatalf("warnings %v, want one for OnBootSec= at line 7", warns)
	}
	u, _, err = Parse("a.timer", []byte("[Timer]\nOnActiveSec=30s\n"))
	if err != nil || u.Spec.Unit != "a.service" || u.Spec.Overlap != OverlapSkip || u.Spec.MissAfter != DefaultMissAfter {
		t.Fatalf("defaults: %+v, %v", u.Spec, err)
	}
}

func TestParseErrors(t *testing.T) {
	for body, want := range map[string]string{
		"[Timer]\n\nOnCalendar=Mon..Fry 02:00\n":           "t.timer:3: OnCalendar=Mon..Fry 02:00: calendar: invalid calendar event",
		"[Timer]\nOnCalendar=*-*-* 25:00\n":                "t.timer:2: OnCalendar=*-*-* 25:00: calendar: invalid calendar event \"*-*-* 25:00\": hour 25 is out of range 0..23",
		"[Timer]\n[X-SSI]\nSchedule=61 * * * *\n":          "t.timer:3: Schedule=61 * * * *: not a crontab expression",
		"[Timer]\nOnActiveSec=5 fortnights\n":              "t.timer:2: OnActiveSec=5 fortnights",
		"[Timer]\nOnActiveSec=1h\n[X-SSI]\nOverlap=kill\n": "t.timer:4: Overlap=kill: want skip, queue or replace",
		"[Timer]\nPersistent=true\n":                       "t.timer: no OnCalendar=",
		"[Timer]\nOnActiveSec=1h\nUnit=x.socket\n":         "t.timer:3: Unit=x.socket",
		"OnCalendar=daily\n":                               "t.timer:1: OnCalendar= before any [Section]",
	} {
		_, _, err := Parse("t.timer", []byte(body))
		if !errors.Is(err, service.ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", body, err, want)
		}
	}
	if _, _, err := Parse("x.service", []byte("")); err == nil {
		t.Error("a .service file parsed as a timer")
	}
}

func TestDue(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.DateTime, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tm := Timer{Name: "t", Spec: Spec{OnCalendar: []string{"*:*:0/5"}, MissAfter: 2 * time.Second}, Updated: at("2026-01-01 00:00:00")}
	last := Last{Scheduled: at("2026-01-01 00:00:10")}
	// Three ticks due by 00:00:26: 15 and 20 missed, 25 not.
	due, _ := Due(tm, last, at("2026-01-01 00:00:26"), time.UTC)
	if len(due) != 3 || !due[0].Missed || !due[1].Missed || due[2].Missed || due[2].Scheduled != at("2026-01-01 00:00:25") {
		t.Fatalf("due %+v", due)
	}
	// Persistent: the newest missed one is caught up.
	tm.Spec.Persistent = true
	due, _ = Due(tm, last, at("2026-01-01 00:00:33"), time.UTC)
	if len(due) != 4 || !due[2].Missed || due[3].Missed || !due[3].CatchUp || due[3].Scheduled != at("2026-01-01 00:00:30") {
		t.Fatalf("persistent due %+v", due)
	}
	// Nothing before the timer changed.
	tm.Updated = at("2026-01-01 00:00:31")
	if due, _ = Due(tm, last, at("2026-01-01 00:00:33"), time.UTC); len(due) != 0 {
		t.Fatalf("due after a change %+v", due)
	}
	// A long downtime: at most maxDue ticks, the rest counted.
	tm.Updated = at("2026-01-01 00:00:00")
	due, dropped := Due(tm, last, at("2026-01-02 00:00:00"), time.UTC)
	if len(due) != maxDue || dropped == 0 || !due[len(due)-2].CatchUp || due[len(due)-1].Missed {
		t.Fatalf("%d due, %d dropped", len(due), dropped)
	}
	// OnActiveSec fires once after the apply; OnUnitActiveSec after each run.
	rel := Timer{Name: "r", Spec: Spec{OnActive: time.Minute, OnUnitActive: time.Hour, MissAfter: time.Minute}, Updated: at("2026-01-01 00:00:00")}
	if n := Next(rel, rel.Updated, Last{}, time.UTC); n != at("2026-01-01 00:01:00") {
		t.Fatalf("OnActiveSec: next %v", n)
	}
	l := Last{Scheduled: at("2026-01-01 00:01:00"), RunStarted: at("2026-01-01 00:01:01")}
	if n := Next(rel, l.Scheduled, l, time.UTC); n != at("2026-01-01 01:01:01") {
		t.Fatalf("OnUnitActiveSec: next %v", n)
	}
	// RandomizedDelaySec: the same delay on every controller, within bounds.
	rd := Timer{Name: "d", Spec: Spec{RandomizedDelay: time.Minute}}
	if a, b := Delay(rd, at("2026-01-01 00:00:00")), Delay(rd, at("2026-01-01 00:00:00")); a != b || a < 0 || a >= time.Minute {
		t.Fatalf("delays %v %v", a, b)
	}
	// Schedule= (crontab).
	cr := Timer{Name: "c", Spec: Spec{Schedule: "*/15 * * * *"}}
	if n := Next(cr, at("2026-01-01 00:07:00"), Last{}, time.UTC); n != at("2026-01-01 00:15:00") {
		t.Fatalf("Schedule: next %v", n)
	}
}
