package calendar

import (
	"fmt"
	"slices"
	"time"
)

// normalize fixes two-digit years, trims each range's end to a multiple of
// its repetition, and sorts and deduplicates each list.
func (s *Spec) normalize() {
	if s.weekdays <= 0 || s.weekdays >= allDays {
		s.weekdays = -1
	}
	if s.endOfMonth && s.day == nil {
		s.endOfMonth = false
	}
	for i := range s.year {
		c := &s.year[i]
		for _, v := range []*int{&c.start, &c.stop} {
			switch {
			case *v >= 0 && *v < 70:
				*v += 2000
			case *v >= 70 && *v < 100:
				*v += 1900
			}
		}
	}
	for _, f := range []*[]component{&s.year, &s.month, &s.day, &s.hour, &s.minute, &s.usec} {
		for i := range *f {
			c := &(*f)[i]
			if c.stop > c.start && c.repeat > 0 {
				c.stop -= (c.stop - c.start) % c.repeat
			}
		}
		slices.SortFunc(*f, func(a, b component) int {
			if a.start != b.start {
				return a.start - b.start
			}
			if a.stop != b.stop {
				return a.stop - b.stop
			}
			return a.repeat - b.repeat
		})
		*f = slices.Compact(*f)
	}
}

// valid checks every field's range, as systemd 252's calendar_spec_valid
// (newer systemd also refuses a range shorter than its repetition).
func (s *Spec) valid() error {
	for _, f := range []struct {
		name     string
		cs       []component
		from, to int
		eom      bool
	}{
		{"year", s.year, minYear, maxYear, false},
		{"month", s.month, 1, 12, false},
		{"day", s.day, 1, 31, s.endOfMonth},
		{"hour", s.hour, 0, 23, false},
		{"minute", s.minute, 0, 59, false},
		{"second", s.usec, 0, 60*usecPerSec - 1, false},
	} {
		to := f.to
		if f.eom {
			to -= 3 // at most 28 days back from the end of a month
		}
		show := func(v int) string {
			if f.name == "second" {
				return fmt.Sprintf("%g", float64(v)/usecPerSec)
			}
			return fmt.Sprint(v)
		}
		rng := fmt.Sprintf("%s..%s", show(f.from), show(to))
		if f.name == "second" {
			rng = "0..59.999999"
		}
		for _, c := range f.cs {
			if c.start < f.from || c.start > to {
				return fmt.Errorf("%s %s is out of range %s", f.name, show(c.start), rng)
			}
			if c.stop >= 0 {
				if c.stop < f.from || c.stop > to {
					return fmt.Errorf("%s %s is out of range %s", f.name, show(c.stop), rng)
				}
				if c.start > c.stop {
					return fmt.Errorf("%s range %s..%s runs backwards", f.name, show(c.start), show(c.stop))
				}
			} else if f.eom && c.start-c.repeat < f.from {
				return fmt.Errorf("%s ~%s/%s repeats past the end of the month", f.name, show(c.start), show(c.repeat))
			} else if !f.eom && c.start+c.repeat > to {
				return fmt.Errorf("%s %s/%s never repeats within %s", f.name, show(c.start), show(c.repeat), rng)
			}
		}
	}
	return nil
}

// tm is a broken-down time as C's struct tm holds it, before normalization:
// fields may be out of their ranges. mon is 0-based.
type tm struct {
	year, mon, mday, hour, min, sec int
}

func (s *Spec) date(t tm, loc *time.Location) time.Time { return mktime(t, loc) }

func broken(d time.Time) tm {
	return tm{d.Year(), int(d.Month()) - 1, d.Day(), d.Hour(), d.Minute(), d.Second()}
}

// within is systemd's tm_within_bounds: it reports whether t is a real
// time (normalizing changes nothing). If normalizing moves t forward, t
// becomes the normalized time with the unit below the first one that
// changed reset (33 March becomes 1 April, not 2 April) and within reports
// false; in reports false when t is past 2199 or normalizing would move it
// backwards.
func (s *Spec) within(t *tm, loc *time.Location) (good, in bool) {
	if t.year > maxYear {
		return false, false
	}
	n := broken(mktime(*t, loc))
	var cmp int
	switch {
	case n.year != t.year:
		cmp, n.mon = sign(n.year-t.year), 0
	case n.mon != t.mon:
		cmp, n.mday = sign(n.mon-t.mon), 1
	case n.mday != t.mday:
		cmp, n.hour = sign(n.mday-t.mday), 0
	case n.hour != t.hour:
		cmp, n.min = sign(n.hour-t.hour), 0
	case n.min != t.min:
		cmp, n.sec = sign(n.min-t.min), 0
	default:
		cmp = sign(n.sec - t.sec)
	}
	if cmp < 0 {
		return false, false
	}
	if cmp > 0 {
		*t = n
		return false, true
	}
	return true, true
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// mktime is C's mktime with tm_isdst = -1, made deterministic: a wall
// clock time that occurs twice (when clocks go back) is the earlier
// instant; one that does not occur (when clocks go forward) is read with
// the offset before the change, so it lands after the gap.
func mktime(t tm, loc *time.Location) time.Time {
	d := time.Date(t.year, time.Month(t.mon+1), t.mday, t.hour, t.min, t.sec, 0, loc)
	if loc == time.UTC {
		return d
	}
	wall := time.Date(t.year, time.Month(t.mon+1), t.mday, t.hour, t.min, t.sec, 0, time.UTC)
	_, before := d.Add(-3 * time.Hour).Zone()
	_, after := d.Add(3 * time.Hour).Zone()
	if before == after {
		return d
	}
	a := wall.Add(-time.Duration(before) * time.Second)
	b := wall.Add(-time.Duration(after) * time.Second)
	okA := broken(a.In(loc)) == broken(wall)
	okB := broken(b.In(loc)) == broken(wall)
	switch {
	case okA && okB:
		if b.Before(a) {
			return b.In(loc)
		}
		return a.In(loc)
	case okA:
		return a.In(loc)
	case okB:
		return b.In(loc)
	}
	return a.In(loc)
}

// match finds the smallest value of cs not below *val; it reports whether
// one exists and whether it differs from *val.
func (s *Spec) match(cs []component, isDay bool, t tm, loc *time.Location, val *int) (found, changed bool) {
	if cs == nil {
		return true, false
	}
	d, set := 0, false
	for _, c := range cs {
		start, stop := c.start, c.stop
		if isDay && s.endOfMonth {
			start, stop = endOfMonth(t, loc, start), endOfMonth(t, loc, stop)
			if stop > 0 {
				start, stop = stop, start
			}
		}
		if start >= *val {
			if !set || start < d {
				d, set = start, true
			}
		} else if c.repeat > 0 {
			k := start + c.repeat*((*val-start+c.repeat-1)/c.repeat)
			if (!set || k < d) && (stop < 0 || k <= stop) {
				d, set = k, true
			}
		}
	}
	if !set {
		return false, false
	}
	changed = *val != d
	*val = d
	return true, changed
}

// endOfMonth is the day of t's month that is day days back from its end
// (1: the last day), or -1.
func endOfMonth(t tm, loc *time.Location, day int) int {
	n := mktime(tm{t.year, t.mon + 1, 1 - day, t.hour, t.min, t.sec}, loc)
	if int(n.Month())-1 != ((t.mon%12)+12)%12 {
		return -1
	}
	return n.Day()
}

// Next returns the first time the event elapses strictly after after, or
// the zero time when it never does (again). An event without a time zone
// is evaluated in after's location.
func (s *Spec) Next(after time.Time) time.Time {
	loc := after.Location()
	if s.utc {
		loc = time.UTC
	} else if s.loc != nil {
		loc = s.loc
	}
	u := after.UnixMicro() + 1
	start := time.UnixMicro(u).In(loc)
	c := broken(start)
	usec := int(((u % usecPerSec) + usecPerSec) % usecPerSec)
	if !s.find(&c, &usec, loc) {
		return time.Time{}
	}
	return s.date(c, loc).Add(time.Duration(usec) * time.Microsecond)
}

// find is systemd's find_next: it moves c forward, field by field from the
// year down, to the first time every field matches.
func (s *Spec) find(tp *tm, usec *int, loc *time.Location) bool {
	c := *tp
	us := *usec
	for {
		c = broken(s.date(c, loc))

		ok, ch := s.match(s.year, false, c, loc, &c.year)
		if !ok {
			return false
		}
		if ch {
			c.mon, c.mday, c.hour, c.min, c.sec, us = 0, 1, 0, 0, 0, 0
		}
		if good, in := s.within(&c, loc); !in || !good {
			return false
		}

		c.mon++
		ok, ch = s.match(s.month, false, c, loc, &c.mon)
		c.mon--
		if ch {
			c.mday, c.hour, c.min, c.sec, us = 1, 0, 0, 0, 0
		}
		good, in := false, false
		if ok {
			good, in = s.within(&c, loc)
		}
		if !ok || !in {
			c.year++
			c.mon, c.mday, c.hour, c.min, c.sec, us = 0, 1, 0, 0, 0, 0
			continue
		}
		if !good {
			continue
		}

		ok, ch = s.match(s.day, true, c, loc, &c.mday)
		if ch {
			c.hour, c.min, c.sec, us = 0, 0, 0, 0
		}
		if ok {
			good, in = s.within(&c, loc)
		}
		if !ok || !in {
			c.mon++
			c.mday, c.hour, c.min, c.sec, us = 1, 0, 0, 0, 0
			continue
		}
		if !good {
			continue
		}

		if s.weekdays >= 0 {
			wd := (int(s.date(c, loc).Weekday()) + 6) % 7 // Monday = 0
			if s.weekdays&(1<<wd) == 0 {
				c.mday++
				c.hour, c.min, c.sec, us = 0, 0, 0, 0
				continue
			}
		}

		ok, ch = s.match(s.hour, false, c, loc, &c.hour)
		if ch {
			c.min, c.sec, us = 0, 0, 0
		}
		if ok {
			good, in = s.within(&c, loc)
		}
		if !ok || !in {
			c.mday++
			c.hour, c.min, c.sec, us = 0, 0, 0, 0
			continue
		}
		if !good {
			continue
		}

		ok, ch = s.match(s.minute, false, c, loc, &c.min)
		if ch {
			c.sec, us = 0, 0
		}
		if ok {
			good, in = s.within(&c, loc)
		}
		if !ok || !in {
			c.hour++
			c.min, c.sec, us = 0, 0, 0
			continue
		}
		if !good {
			continue
		}

		v := c.sec*usecPerSec + us
		ok, _ = s.match(s.usec, false, c, loc, &v)
		us = v % usecPerSec
		c.sec = v / usecPerSec
		if ok {
			good, in = s.within(&c, loc)
		}
		if !ok || !in {
			c.min++
			c.sec, us = 0, 0
			continue
		}
		if !good {
			continue
		}
		*tp, *usec = c, us
		return true
	}
}
