package calendar

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("calendar: invalid calendar event")

const (
	usecPerSec = 1_000_000
	minYear    = 1970
	maxYear    = 2199
	maxChain   = 240 // components in one list, as systemd's CALENDARSPEC_COMPONENTS_MAX
	allDays    = 1<<7 - 1
	intMax     = 1<<31 - 1
)

// component is one element of a field's list: start, or start..stop, with
// an optional repetition; stop is -1 when open. Seconds are in microseconds.
type component struct {
	start, stop, repeat int
}

// Spec is a parsed calendar event. It is immutable and safe for concurrent
// use.
type Spec struct {
	text string
	// weekdays is a bit set, Monday = bit 0; -1 for every day.
	weekdays int
	// endOfMonth: day counts back from the end of the month (~).
	endOfMonth bool
	// nil field: any value.
	year, month, day, hour, minute, usec []component
	utc                                  bool
	zone                                 string
	loc                                  *time.Location
}

// String returns the expression as it was written.
func (s *Spec) String() string { return s.text }

// Location is the time zone the event names (UTC or an IANA zone), or nil
// when it names none and is evaluated in the location of Next's argument.
func (s *Spec) Location() *time.Location {
	if s.utc {
		return time.UTC
	}
	return s.loc
}

// parseError is what Parse returns: the expression, where, and why.
func parseError(expr, rest, why string) error {
	if rest == "" {
		return fmt.Errorf("%w %q: %s", ErrSyntax, expr, why)
	}
	return fmt.Errorf("%w %q: %s at %q", ErrSyntax, expr, why, rest)
}

var shorthands = map[string]string{
	"minutely":      "*-*-* *:*:00",
	"hourly":        "*-*-* *:00:00",
	"daily":         "*-*-* 00:00:00",
	"monthly":       "*-*-01 00:00:00",
	"weekly":        "Mon *-*-* 00:00:00",
	"yearly":        "*-01-01 00:00:00",
	"annually":      "*-01-01 00:00:00",
	"anually":       "*-01-01 00:00:00",
	"quarterly":     "*-01,04,07,10-01 00:00:00",
	"semiannually":  "*-01,07-01 00:00:00",
	"semi-annually": "*-01,07-01 00:00:00",
	"biannually":    "*-01,07-01 00:00:00",
	"bi-annually":   "*-01,07-01 00:00:00",
}

// Parse parses a calendar event. The error says what is wrong and where.
func Parse(expr string) (*Spec, error) {
	s := &Spec{text: expr}
	p := expr
	if strings.HasSuffix(strings.ToUpper(p), " UTC") {
		s.utc = true
		p = p[:len(p)-4]
	} else if i := strings.LastIndexByte(p, ' '); i >= 0 && validZoneName(p[i+1:]) {
		if loc, err := time.LoadLocation(p[i+1:]); err == nil {
			s.zone, s.loc = p[i+1:], loc
			p = p[:i]
		}
	}
	if s.zone == "UTC" {
		s.utc, s.zone, s.loc = true, "", nil
	}
	if p == "" {
		return nil, parseError(expr, "", "empty")
	}
	if full, ok := shorthands[strings.ToLower(p)]; ok {
		p = full
	}
	rest, err := s.parseWeekdays(p)
	if err != nil {
		return nil, parseError(expr, rest, err.Error())
	}
	rest, done, err := s.parseDate(rest)
	if err != nil {
		return nil, parseError(expr, rest, err.Error())
	}
	if !done {
		if rest, err = s.parseTime(rest); err != nil {
			return nil, parseError(expr, rest, err.Error())
		}
	}
	if rest != "" {
		return nil, parseError(expr, rest, "unexpected text")
	}
	s.normalize()
	if err := s.valid(); err != nil {
		return nil, parseError(expr, "", err.Error())
	}
	return s, nil
}

// validZoneName is systemd's check of a zone name's characters.
func validZoneName(name string) bool {
	if name == "" || name[0] == '/' {
		return false
	}
	if name == "UTC" {
		return true
	}
	slash := false
	for _, r := range name {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-', r == '_', r == '+':
			slash = false
		case r == '/':
			if slash {
				return false
			}
			slash = true
		default:
			return false
		}
	}
	return !slash && name != "Local"
}

var dayNames = []struct {
	name string
	nr   int
}{
	{"monday", 0}, {"mon", 0}, {"tuesday", 1}, {"tue", 1}, {"wednesday", 2}, {"wed", 2},
	{"thursday", 3}, {"thu", 3}, {"friday", 4}, {"fri", 4}, {"saturday", 5}, {"sat", 5},
	{"sunday", 6}, {"sun", 6},
}

// parseWeekdays reads an optional weekday list: Mon, Mon..Fri, Sat,Sun.
func (s *Spec) parseWeekdays(p string) (string, error) {
	last := -1
	first := true
	for {
		found := -1
		for _, d := range dayNames {
			if len(p) < len(d.name) || !strings.EqualFold(p[:len(d.name)], d.name) {
				continue
			}
			if rest := p[len(d.name):]; rest != "" && !strings.ContainsRune("-.,  ", rune(rest[0])) {
				return p, errors.New("unknown weekday")
			}
			s.weekdays |= 1 << d.nr
			if last >= 0 {
				if last > d.nr {
					return p, errors.New("weekday range runs backwards (write Mon..Sun order)")
				}
				for j := last + 1; j < d.nr; j++ {
					s.weekdays |= 1 << j
				}
			}
			p = p[len(d.name):]
			found = d.nr
			break
		}
		if found < 0 {
			if first {
				return p, nil
			}
			return p, errors.New("expected a weekday")
		}
		if p == "" {
			return p, nil
		}
		if p[0] == ' ' {
			return strings.TrimLeft(p, " "), nil
		}
		switch p[0] {
		case '.':
			if last >= 0 {
				return p, errors.New("weekday range after a range")
			}
			if len(p) < 2 || p[1] != '.' {
				return p, errors.New("a range is written with '..'")
			}
			last = found
			p = p[2:]
		case '-':
			if last >= 0 {
				return p, errors.New("weekday range after a range")
			}
			last = found
			p = p[1:]
		case ',':
			last = -1
			p = p[1:]
		}
		if p == "" || p[0] == ' ' {
			if last >= 0 {
				return p, errors.New("open weekday range")
			}
			return strings.TrimLeft(p, " "), nil
		}
		first = false
	}
}

// parseDate reads an optional date: [YEAR-]MONTH-DAY or MONTH~DAY, or
// @EPOCH (then done: no time follows).
func (s *Spec) parseDate(p string) (rest string, done bool, err error) {
	if p == "" {
		return p, false, nil
	}
	if p[0] == '@' {
		n, rest, err := number(p[1:])
		if err != nil {
			return p, false, errors.New("@ takes seconds since the epoch")
		}
		t := time.Unix(int64(n), 0).UTC()
		s.year = []component{{t.Year(), -1, 0}}
		s.month = []component{{int(t.Month()), -1, 0}}
		s.day = []component{{t.Day(), -1, 0}}
		s.hour = []component{{t.Hour(), -1, 0}}
		s.minute = []component{{t.Minute(), -1, 0}}
		s.usec = []component{{t.Second() * usecPerSec, -1, 0}}
		s.utc = true
		return rest, true, nil
	}
	t := p
	first, t, err := parseChain(t, false)
	if err != nil {
		return t, false, err
	}
	if t == "" || t[0] == ':' {
		return p, false, nil // a time, not a date
	}
	switch t[0] {
	case '~':
		s.endOfMonth = true
	case '-':
	default:
		return t, false, errors.New("expected '-' or '~' in the date")
	}
	second, t, err := parseChain(t[1:], false)
	if err != nil {
		return t, false, err
	}
	if t == "" || t[0] == ' ' {
		s.month, s.day = first, second
		return strings.TrimLeft(t, " "), false, nil
	}
	if s.endOfMonth {
		return t, false, errors.New("'~' must separate month and day")
	}
	switch t[0] {
	case '~':
		s.endOfMonth = true
	case '-':
	default:
		return t, false, errors.New("expected '-' or '~' in the date")
	}
	third, t, err := parseChain(t[1:], false)
	if err != nil {
		return t, false, err
	}
	if t != "" && t[0] != ' ' {
		return t, false, errors.New("expected a space after the date")
	}
	s.year, s.month, s.day = first, second, third
	return strings.TrimLeft(t, " "), false, nil
}

// parseTime reads HOUR:MINUTE[:SECOND]; nothing means 00:00:00.
func (s *Spec) parseTime(p string) (string, error) {
	if p == "" {
		s.hour = []component{{0, -1, 0}}
		s.minute = []component{{0, -1, 0}}
		s.usec = []component{{0, -1, 0}}
		return p, nil
	}
	h, t, err := parseChain(p, false)
	if err != nil {
		return t, err
	}
	if t == "" || t[0] != ':' {
		return t, errors.New("expected ':' after the hour")
	}
	m, t, err := parseChain(t[1:], false)
	if err != nil {
		return t, err
	}
	s.hour, s.minute = h, m
	if t == "" {
		s.usec = []component{{0, -1, 0}}
		return t, nil
	}
	if t[0] != ':' {
		return t, errors.New("expected ':' after the minute")
	}
	sec, t, err := parseChain(t[1:], true)
	if err != nil {
		return t, err
	}
	if t != "" {
		return t, errors.New("unexpected text after the seconds")
	}
	s.usec = sec
	return t, nil
}

// parseChain reads '*' or a comma-separated list of components. '*' is
// nil (any value), for seconds every whole second.
func parseChain(p string, usec bool) ([]component, string, error) {
	if strings.HasPrefix(p, "*") {
		if usec {
			return []component{{0, -1, usecPerSec}}, p[1:], nil
		}
		return nil, p[1:], nil
	}
	var cs []component
	for {
		if len(cs) > maxChain {
			return nil, p, fmt.Errorf("more than %d values in a list", maxChain)
		}
		c := component{stop: -1}
		var err error
		if c.start, p, err = decimal(p, usec); err != nil {
			return nil, p, err
		}
		if strings.HasPrefix(p, "..") {
			if c.stop, p, err = decimal(p[2:], usec); err != nil {
				return nil, p, err
			}
			c.repeat = 1
			if usec {
				c.repeat = usecPerSec
			}
		}
		if strings.HasPrefix(p, "/") {
			if c.repeat, p, err = decimal(p[1:], usec); err != nil {
				return nil, p, err
			}
			if c.repeat == 0 {
				return nil, p, errors.New("a repetition of 0")
			}
		} else if usec && c.stop >= 0 && c.start+c.repeat > c.stop {
			return nil, p, errors.New("a range of seconds without a repetition spans less than a second")
		}
		if p != "" && !strings.ContainsRune(" ,-~:", rune(p[0])) {
			return nil, p, errors.New("unexpected character")
		}
		cs = append(cs, c)
		if p == "" || p[0] != ',' {
			return cs, p, nil
		}
		p = p[1:]
	}
}

// number reads an unsigned decimal as strtoul does.
func number(p string) (int, string, error) {
	i := 0
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, p, errors.New("expected a number")
	}
	n, err := strconv.ParseUint(p[:i], 10, 64)
	if err != nil || n > 1<<62 {
		return 0, p, errors.New("number out of range")
	}
	return int(n), p[i:], nil
}

// decimal reads one value of a component; for seconds, with an optional
// fraction (six digits kept, the seventh rounds), in microseconds.
func decimal(p string, usec bool) (int, string, error) {
	n, rest, err := number(p)
	if err != nil {
		return 0, p, err
	}
	if usec {
		if n > intMax/usecPerSec+1 {
			return 0, p, errors.New("number out of range")
		}
		n *= usecPerSec
		if len(rest) > 0 && rest[0] == '.' && (len(rest) < 2 || rest[1] != '.') {
			rest = rest[1:]
			frac, i := 0, 0
			for ; i < 6; i++ {
				if i >= len(rest) || rest[i] < '0' || rest[i] > '9' {
					if i == 0 {
						return 0, rest, errors.New("expected digits after '.'")
					}
					for ; i < 6; i++ {
						frac *= 10
					}
					break
				}
				frac = frac*10 + int(rest[i]-'0')
			}
			k := 0
			for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
				k++
			}
			if k > 6 && rest[6] >= '5' {
				frac++
			}
			rest = rest[k:]
			n += frac
		}
	}
	if n > intMax {
		return 0, p, errors.New("number out of range")
	}
	return n, rest, nil
}
