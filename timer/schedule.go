package timer

import (
	"hash/fnv"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ssi-cluster/ssi/calendar"
)

// maxDue bounds the ticks one pass considers for a timer; older ones due
// are counted, not recorded.
const maxDue = 100

// Last is what the schedule depends on of a timer's history.
type Last struct {
	// Scheduled is the newest tick's (not ssi timer run's) scheduled time.
	Scheduled time.Time
	// RunStarted and RunEnded are the last run's (for OnUnitActiveSec= and
	// OnUnitInactiveSec=); zero when none.
	RunStarted, RunEnded time.Time
}

// Next returns timer t's first elapse strictly after after, or zero. Its
// calendar events are evaluated in loc when they name no zone.
func Next(t Timer, after time.Time, last Last, loc *time.Location) time.Time {
	var best time.Time
	take := func(c time.Time) {
		if !c.IsZero() && c.After(after) && (best.IsZero() || c.Before(best)) {
			best = c
		}
	}
	for _, e := range t.Spec.OnCalendar {
		if spec, err := calendar.Parse(e); err == nil {
			take(spec.Next(after.In(loc)))
		}
	}
	if t.Spec.Schedule != "" {
		if sch, err := cron.ParseStandard(t.Spec.Schedule); err == nil {
			take(sch.Next(after.In(loc)))
		}
	}
	if t.Spec.OnActive > 0 {
		take(t.Updated.Add(t.Spec.OnActive))
	}
	if t.Spec.OnUnitActive > 0 && !last.RunStarted.IsZero() {
		take(last.RunStarted.Add(t.Spec.OnUnitActive))
	}
	if t.Spec.OnUnitInactive > 0 && !last.RunEnded.IsZero() {
		take(last.RunEnded.Add(t.Spec.OnUnitInactive))
	}
	return best
}

// Delay is a tick's randomized delay (RandomizedDelaySec=): the same for
// the same timer and tick on every controller, so a new leader does not
// draw again.
func Delay(t Timer, scheduled time.Time) time.Duration {
	if t.Spec.RandomizedDelay <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(t.Name))
	h.Write([]byte(scheduled.UTC().Format(time.RFC3339Nano)))
	return time.Duration(h.Sum64() % uint64(t.Spec.RandomizedDelay))
}

// DueTick is a tick due by now, and whether it is missed (due longer ago
// than MissAfter).
type DueTick struct {
	Scheduled, Due time.Time
	Missed         bool
	// CatchUp: the last missed tick of a Persistent= timer, run.
	CatchUp bool
}

// Due is the schedule as a pure function: the ticks of t due by now after
// its last tick (or its last change, if later), oldest first, at most
// maxDue (the newest); dropped counts the older ones not returned.
func Due(t Timer, last Last, now time.Time, loc *time.Location) (due []DueTick, dropped int) {
	after := last.Scheduled
	if t.Updated.After(after) {
		after = t.Updated.Add(-time.Nanosecond) // a tick at the apply instant counts
	}
	for i := 0; i < 100_000; i++ {
		s := Next(t, after, last, loc)
		if s.IsZero() {
			break
		}
		d := s.Add(Delay(t, s))
		if d.After(now) {
			break
		}
		due = append(due, DueTick{Scheduled: s, Due: d, Missed: now.Sub(d) > t.Spec.MissAfter})
		if len(due) > maxDue {
			due = due[1:]
			dropped++
		}
		after = s
		// Relative triggers fire once per run: the next waits for it.
		if len(t.Spec.OnCalendar) == 0 && t.Spec.Schedule == "" {
			break
		}
	}
	if t.Spec.Persistent {
		// Of the missed ticks, the newest runs once (systemd's Persistent=),
		// even when a newer tick is due too, as systemd runs a missed one at
		// boot and the next at its time.
		for i := len(due) - 1; i >= 0; i-- {
			if due[i].Missed {
				due[i].Missed, due[i].CatchUp = false, true
				break
			}
		}
	}
	return due, dropped
}
