// Package calendar parses systemd calendar events, the syntax of a timer
// unit's OnCalendar= (systemd.time(7)), and computes when they elapse.
//
//	spec, err := calendar.Parse("Mon..Fri *-*-* 02:00")
//	if err != nil { ... } // err names what is wrong and where
//	next := spec.Next(time.Now()) // zero when it never elapses again
//
// The whole syntax is supported: the shorthands (minutely, hourly, daily,
// weekly, monthly, yearly/annually, quarterly, semiannually/biannually),
// weekday lists and ranges (Mon..Fri, Sat,Sun, Mon-Wed), dates with lists,
// ranges a..b and repetitions /N in every field, two-digit years, the last
// days of a month (*-02~03, *-*~07/1), seconds with fractions
// (*:*:00/0.5), @EPOCH, and a trailing time zone: UTC or an IANA name
// (Europe/Berlin). An event without a zone is evaluated in the location of
// the time passed to Next (as systemd evaluates it in the local zone).
//
// The semantics follow systemd's src/shared/calendarspec.c (v252): the same
// expressions are accepted and rejected, and Next returns the same elapses,
// checked against `systemd-analyze calendar --base-time=… --iterations=N`
// for the corpus in testdata/corpus.txt (TestAgainstSystemd).
//
// ParseSpan parses systemd time spans ("5min 20s", "1h", "500ms"), as
// OnActiveSec= and RandomizedDelaySec= take them.
package calendar
