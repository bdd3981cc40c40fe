package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// offset is timer i's offset into its period: i × period / n, to the
// millisecond.
func offset(i, n int, period time.Duration) time.Duration {
	return (period * time.Duration(i) / time.Duration(n)).Truncate(time.Millisecond)
}

// onCalendar is the OnCalendar= of a timer firing every period minutes at
// off into the period.
func onCalendar(period int, off time.Duration) string {
	m := int(off / time.Minute)
	s := off % time.Minute
	sec := fmt.Sprintf("%02d.%03d", int(s/time.Second), int(s%time.Second/time.Millisecond))
	switch period {
	case 1:
		return "*-*-* *:*:" + sec
	case 60:
		return fmt.Sprintf("*-*-* *:%02d:%s", m, sec)
	}
	return fmt.Sprintf("*-*-* *:%02d/%d:%s", m, period, sec)
}

// timerName is timer i's unit name.
func timerName(i int) string { return fmt.Sprintf("bt%05d", i) }

// writeUnits writes n timers and their services into dir; each run appends
// "TIMER TICK TIME" to runLog.
func writeUnits(dir string, n, period int, runLog string) error {
	for i := range n {
		name := timerName(i)
		t := fmt.Sprintf("[Unit]\nDescription=benchtimer %d of %d\n\n[Timer]\nOnCalendar=%s\n", i, n, onCalendar(period, offset(i, n, time.Duration(period)*time.Minute)))
		// $$ and %% are systemd's escapes of $ and %.
		s := fmt.Sprintf("[Service]\nExecStart=/bin/sh -c \"echo $${SSI_TIMER} $${SSI_TIMER_TICK} $$(date +%%%%s.%%%%N) >> %s\"\n", runLog)
		if err := os.WriteFile(filepath.Join(dir, name+".timer"), []byte(t), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".service"), []byte(s), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runLine is one line of the run log.
type runLine struct {
	timer     string
	scheduled time.Time
	ran       time.Time
}

// parseRunLog reads the run log's lines; bad lines are counted, not fatal.
func parseRunLog(data string) (lines []runLine, bad int) {
	for _, l := range strings.Split(data, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			bad++
			continue
		}
		sched, err := time.Parse(time.RFC3339Nano, f[1])
		if err != nil {
			bad++
			continue
		}
		sec, frac, _ := strings.Cut(f[2], ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		ns, err2 := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		if err1 != nil || err2 != nil {
			bad++
			continue
		}
		lines = append(lines, runLine{timer: f[0], scheduled: sched, ran: time.Unix(s, ns)})
	}
	return lines, bad
}
