package timer

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/robfig/cron/v3"

	"github.com/ssi-cluster/ssi/calendar"
	"github.com/ssi-cluster/ssi/pidtable"
	"github.com/ssi-cluster/ssi/service"
)

// Overlap policies and the default MissAfter (see pidtable.TimerSpec).
const (
	OverlapSkip      = pidtable.OverlapSkip
	OverlapQueue     = pidtable.OverlapQueue
	OverlapReplace   = pidtable.OverlapReplace
	DefaultMissAfter = pidtable.DefaultMissAfter
)

// Spec is what a .timer unit says.
type Spec = pidtable.TimerSpec

// Unit is a parsed timer unit.
type Unit struct {
	// Name is the timer's name: the file's name without ".timer".
	Name string
	File string
	Spec Spec
}

// UnitName returns the timer name of a .timer file.
func UnitName(file string) (string, error) {
	name, ok := strings.CutSuffix(filepath.Base(file), ".timer")
	if !ok {
		return "", &service.ParseError{File: file, Msg: "not a .timer unit"}
	}
	if _, _, err := service.UnitName(name + ".service"); err != nil || strings.Contains(name, "@") {
		return "", &service.ParseError{File: file, Msg: fmt.Sprintf("timer name %q: letters, digits, _ . : - only, at most 100 characters", name)}
	}
	return name, nil
}

// Parse reads the timer unit named file with contents data. Warnings name
// directives ssi ignores; an error (a *service.ParseError, file:line) is the
// first thing it cannot accept.
func Parse(file string, data []byte) (Unit, []service.Warning, error) {
	name, err := UnitName(file)
	if err != nil {
		return Unit{}, nil, err
	}
	lines, err := service.ScanLines(data)
	if err != nil {
		var pe *service.ParseError
		if errors.As(err, &pe) {
			pe.File = file
		}
		return Unit{}, nil, err
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		return Unit{}, nil, &service.ParseError{File: file, Msg: fmt.Sprintf("cannot parse: %v", err)}
	}
	if len(opts) != len(lines) {
		lines = make([]int, len(opts))
	}
	u := Unit{Name: name, File: file, Spec: Spec{Overlap: OverlapSkip, MissAfter: DefaultMissAfter}}
	var warns []service.Warning
	fail := func(line int, format string, args ...any) error {
		return &service.ParseError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	span := func(o *unit.UnitOption, line int) (time.Duration, error) {
		d, err := calendar.ParseSpan(o.Value)
		if err != nil {
			return 0, fail(line, "%s=%s: %v", o.Name, o.Value, err)
		}
		return d, nil
	}
	s := &u.Spec
	for i, o := range opts {
		line := lines[i]
		key := o.Section + "." + o.Name
		var err error
		switch key {
		case "Unit.Description":
			s.Description = o.Value
		case "Install.WantedBy", "Install.RequiredBy", "Install.Also", "Install.Alias":
			// systemctl enable's business; a timer applied is active.
		case "Timer.OnCalendar":
			if o.Value == "" {
				s.OnCalendar = nil // an empty assignment resets the list, as systemd
				continue
			}
			if _, perr := calendar.Parse(o.Value); perr != nil {
				return Unit{}, nil, fail(line, "OnCalendar=%s: %v", o.Value, perr)
			}
			s.OnCalendar = append(s.OnCalendar, o.Value)
		case "Timer.OnActiveSec":
			s.OnActive, err = span(o, line)
		case "Timer.OnUnitActiveSec":
			s.OnUnitActive, err = span(o, line)
		case "Timer.OnUnitInactiveSec":
			s.OnUnitInactive, err = span(o, line)
		case "Timer.RandomizedDelaySec":
			s.RandomizedDelay, err = span(o, line)
		case "Timer.AccuracySec":
			s.Accuracy, err = span(o, line)
		case "Timer.Persistent":
			switch strings.ToLower(o.Value) {
			case "1", "yes", "true", "on":
				s.Persistent = true
			case "0", "no", "false", "off":
				s.Persistent = false
			default:
				return Unit{}, nil, fail(line, "Persistent=%s: want yes or no", o.Value)
			}
		case "Timer.Unit":
			if !strings.HasSuffix(o.Value, ".service") || strings.Contains(o.Value, "/") {
				return Unit{}, nil, fail(line, "Unit=%s: a timer starts a NAME.service unit", o.Value)
			}
			s.Unit = o.Value
		case "Timer.OnBootSec", "Timer.OnStartupSec":
			warns = append(warns, service.Warning{File: file, Line: line, Msg: o.Name + "= ignored: a cluster has no boot; use OnActiveSec= (after ssi apply)"})
		case "X-SSI.Schedule":
			if _, perr := cron.ParseStandard(o.Value); perr != nil {
				return Unit{}, nil, fail(line, "Schedule=%s: not a crontab expression (5 fields, or @hourly, @daily, @every 1h): %v", o.Value, perr)
			}
			s.Schedule = o.Value
		case "X-SSI.Overlap":
			switch o.Value {
			case OverlapSkip, OverlapQueue, OverlapReplace:
				s.Overlap = o.Value
			default:
				return Unit{}, nil, fail(line, "Overlap=%s: want skip, queue or replace", o.Value)
			}
		case "X-SSI.MissAfter":
			s.MissAfter, err = span(o, line)
			if err == nil && s.MissAfter < time.Second {
				return Unit{}, nil, fail(line, "MissAfter=%s: at least 1s", o.Value)
			}
		default:
			warns = append(warns, service.Warning{File: file, Line: line, Msg: fmt.Sprintf("[%s] %s= ignored: ssi does not support it in a timer", o.Section, o.Name)})
		}
		if err != nil {
			return Unit{}, nil, err
		}
	}
	if s.Unit == "" {
		s.Unit = name + ".service"
	}
	if len(s.OnCalendar) == 0 && s.Schedule == "" && s.OnActive == 0 && s.OnUnitActive == 0 && s.OnUnitInactive == 0 {
		return Unit{}, nil, &service.ParseError{File: file, Msg: "no OnCalendar=, OnActiveSec=, OnUnitActiveSec=, OnUnitInactiveSec= or [X-SSI] Schedule=: the timer would never fire"}
	}
	return u, warns, nil
}
