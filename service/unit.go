package service

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/pidtable"
)

// Limits of a unit.
const (
	// MaxReplicas bounds Replicas= and ssi service scale.
	MaxReplicas = 1000
	// minCheckpointEvery is supervisor.MinCheckpointEvery (ssi run's bound).
	minCheckpointEvery = 2 * time.Second
	// DefaultRestartSec is systemd's default RestartSec= (100ms).
	DefaultRestartSec = 100 * time.Millisecond
	// DefaultStopTimeout is systemd's default TimeoutStopSec= (90s).
	DefaultStopTimeout = 90 * time.Second
	maxStopTimeout     = time.Hour
	maxUnitBytes       = 256 << 10
)

// ErrMalformed is wrapped by every *ParseError.
var ErrMalformed = errors.New("service: malformed unit")

// ParseError is a unit ssi cannot accept, at File:Line (Line 0: the file as
// a whole).
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

func (e *ParseError) Unwrap() error { return ErrMalformed }

// Warning is a directive ssi ignores, at File:Line.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// Unit is a parsed service unit.
type Unit struct {
	// Name is the service's name: the file's name without ".service", with
	// a template's instance filled in (worker@.service, instance 3: worker@3).
	Name string
	File string
	Spec pidtable.ServiceSpec
}

// ReadFileFunc reads an EnvironmentFile= (on the machine that runs ssi apply).
type ReadFileFunc func(path string) ([]byte, error)

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9_.:-]+(@[A-Za-z0-9_.:-]*)?$`)
	instanceRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
	labelRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// UnitName returns the service name of a unit file and whether it is a
// template (NAME@.service), which needs an instance.
func UnitName(file string) (string, bool, error) {
	base := filepath.Base(file)
	name, ok := strings.CutSuffix(base, ".service")
	if !ok {
		return "", false, &ParseError{File: file, Msg: "not a .service unit (ssi apply takes NAME.service files)"}
	}
	if len(name) > 100 || !nameRE.MatchString(name) {
		return "", false, &ParseError{File: file, Msg: fmt.Sprintf("unit name %q: letters, digits, _ . : - and one @ only, at most 100 characters", name)}
	}
	return name, strings.HasSuffix(name, "@"), nil
}

// Parse reads the unit file named file with contents data. instance fills a
// template's %i (it must be "" for a plain unit). Warnings name directives
// ssi ignores; an error (a *ParseError) is the first thing ssi cannot accept.
func Parse(file string, data []byte, instance string, readFile ReadFileFunc) (Unit, []Warning, error) {
	name, template, err := UnitName(file)
	if err != nil {
		return Unit{}, nil, err
	}
	switch {
	case template && instance == "":
		return Unit{}, nil, &ParseError{File: file, Msg: "a template unit needs instances: ssi apply " + filepath.Base(file) + " --instances 1..3"}
	case !template && instance != "":
		return Unit{}, nil, &ParseError{File: file, Msg: "--instances is for template units (NAME@.service) only"}
	case template && !instanceRE.MatchString(instance):
		return Unit{}, nil, &ParseError{File: file, Msg: fmt.Sprintf("instance %q: letters, digits, _ . : - only", instance)}
	}
	if template {
		name += instance
	} else if _, inst, ok := strings.Cut(name, "@"); ok {
		instance = inst
	}
	if len(data) > maxUnitBytes {
		return Unit{}, nil, &ParseError{File: file, Msg: fmt.Sprintf("%d bytes: at most %d", len(data), maxUnitBytes)}
	}
	lines, bad := scanLines(data)
	if bad != nil {
		bad.File = file
		return Unit{}, nil, bad
	}
	opts, err := unit.DeserializeOptions(bytes.NewReader(data))
	if err != nil {
		return Unit{}, nil, &ParseError{File: file, Msg: fmt.Sprintf("cannot parse: %v", err)}
	}
	if len(opts) != len(lines) {
		lines = make([]int, len(opts)) // the scan disagrees: no line numbers
	}
	p := &parser{file: file, u: Unit{Name: name, File: file}, spec: names{unit: name, instance: instance}, readFile: readFile}
	for i, o := range opts {
		if err := p.option(o, lines[i]); err != nil {
			return Unit{}, nil, err
		}
	}
	if err := p.finish(); err != nil {
		return Unit{}, nil, err
	}
	return p.u, p.warnings, nil
}

// scanLines finds the line of each option, in the order go-systemd returns
// them, and the first line that is not a comment, a section header or a
// NAME=VALUE option (go-systemd's own errors carry no line).
func scanLines(data []byte) ([]int, *ParseError) {
	var out []int
	section, cont := "", false
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		trimmed := strings.TrimRight(line, " \t\r")
		if cont {
			cont = strings.HasSuffix(trimmed, "\\")
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
			continue
		case t[0] == '[':
			if !strings.HasSuffix(t, "]") || len(t) < 3 {
				return nil, &ParseError{Line: n, Msg: fmt.Sprintf("malformed section header %q", t)}
			}
			section = t[1 : len(t)-1]
			continue
		}
		eq := strings.IndexByte(t, '=')
		if eq <= 0 {
			return nil, &ParseError{Line: n, Msg: fmt.Sprintf("malformed line %q: want NAME=VALUE, [Section], or a # comment", t)}
		}
		if section == "" {
			return nil, &ParseError{Line: n, Msg: fmt.Sprintf("%s= before any [Section]", strings.TrimSpace(t[:eq]))}
		}
		out = append(out, n)
		cont = strings.HasSuffix(trimmed, "\\")
	}
	return out, nil
}

// names are the values of a unit's specifiers (%i, %n, ...).
type names struct{ unit, instance string }

// expand replaces systemd's specifiers ssi knows: %i %I (instance), %n
// (full unit name), %N (without the suffix), %p (prefix), %%.
func (s names) expand(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 == len(v) {
			return "", errors.New("a lone % at the end (write %% for a percent sign)")
		}
		i++
		prefix, _, _ := strings.Cut(s.unit, "@")
		switch v[i] {
		case 'i', 'I':
			b.WriteString(s.instance)
		case 'n':
			b.WriteString(s.unit + ".service")
		case 'N':
			b.WriteString(s.unit)
		case 'p':
			b.WriteString(prefix)
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("specifier %%%c is not supported (ssi knows %%i %%I %%n %%N %%p %%%%)", v[i])
		}
	}
	return b.String(), nil
}

type parser struct {
	file     string
	u        Unit
	spec     names
	readFile ReadFileFunc
	warnings []Warning

	exec       string
	execLine   int
	env        []string
	envFiles   []string
	envLine    int
	haveRepl   bool
	migratable bool
	migSet     bool
}

func (p *parser) warn(line int, format string, args ...any) {
	p.warnings = append(p.warnings, Warning{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) fail(line int, format string, args ...any) error {
	return &ParseError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// specifierDirectives are those whose values ssi expands specifiers in
// (%i, %n, ...); systemd does not expand them in the others (CPUQuota=150%).
var specifierDirectives = map[string]bool{"Description": true, "ExecStart": true, "Environment": true, "EnvironmentFile": true, "WorkingDirectory": true, "User": true, "Group": true, "Constraint": true}

// ignoredUnit are [Unit] directives about ordering and dependencies, which
// ssi does not have.
var ignoredUnit = map[string]bool{"Documentation": true, "After": true, "Before": true, "Wants": true, "Requires": true, "BindsTo": true, "PartOf": true, "Conflicts": true, "ConditionPathExists": true, "StartLimitIntervalSec": true, "StartLimitBurst": true}

func (p *parser) option(o *unit.UnitOption, line int) error {
	// go-systemd keeps a continuation's backslash-newline; systemd reads it
	// as a space.
	v := strings.TrimSpace(strings.ReplaceAll(o.Value, "\\\n", " "))
	if specifierDirectives[o.Name] {
		var err error
		if v, err = p.spec.expand(v); err != nil {
			return p.fail(line, "%s=: %v", o.Name, err)
		}
	}
	s := &p.u.Spec
	switch o.Section {
	case "Unit":
		switch {
		case o.Name == "Description":
			s.Description = v
		case ignoredUnit[o.Name]:
			p.warn(line, "[Unit] %s= ignored: ssi services have no dependencies or ordering", o.Name)
		default:
			p.warn(line, "[Unit] %s= is not supported by ssi; ignored", o.Name)
		}
		return nil
	case "Install":
		p.warn(line, "[Install] %s= ignored: ssi starts a service when it is applied", o.Name)
		return nil
	case "Service":
		return p.service(o.Name, v, line)
	case "X-SSI":
		return p.ssi(o.Name, v, line)
	}
	p.warn(line, "section [%s] is not supported by ssi; %s= ignored", o.Section, o.Name)
	return nil
}

func (p *parser) service(name, v string, line int) error {
	s := &p.u.Spec
	switch name {
	case "Type":
		if v != "simple" && v != "exec" {
			p.warn(line, "Type=%s is not supported (ssi runs services as Type=simple); treated as simple", v)
		}
	case "ExecStart":
		switch {
		case v == "":
			p.exec, p.execLine = "", 0
		case p.exec != "":
			return p.fail(line, "a second ExecStart= (only Type=oneshot units may have several, which ssi does not support)")
		default:
			p.exec, p.execLine = v, line
		}
	case "Environment":
		if v == "" {
			p.env = nil
			return nil
		}
		words, err := splitWords(v)
		if err != nil {
			return p.fail(line, "Environment=: %v", err)
		}
		for _, w := range words {
			if k, _, ok := strings.Cut(w, "="); !ok || !envNameRE.MatchString(k) {
				return p.fail(line, "Environment=: %q is not NAME=VALUE", w)
			}
			p.env = append(p.env, w)
		}
		p.envLine = line
	case "EnvironmentFile":
		if v == "" {
			p.envFiles = nil
			return nil
		}
		optional := strings.HasPrefix(v, "-")
		path := strings.TrimPrefix(v, "-")
		if !filepath.IsAbs(path) {
			return p.fail(line, "EnvironmentFile=%s: must be an absolute path", v)
		}
		if p.readFile == nil {
			return p.fail(line, "EnvironmentFile=%s: no files can be read here", v)
		}
		data, err := p.readFile(path)
		if err != nil {
			if optional {
				p.warn(line, "EnvironmentFile=%s: %v; skipped (optional: - prefix)", v, err)
				return nil
			}
			return p.fail(line, "EnvironmentFile=%s: %v (ssi apply reads it on this machine; prefix it with - if it is optional)", path, err)
		}
		vars, err := parseEnvFile(data)
		if err != nil {
			return p.fail(line, "EnvironmentFile=%s: %v", path, err)
		}
		p.envFiles = append(p.envFiles, vars...)
	case "WorkingDirectory":
		switch {
		case v == "" || v == "~":
			s.Workdir, s.WorkdirOptional = "", false
		case strings.HasPrefix(v, "-"):
			s.Workdir, s.WorkdirOptional = strings.TrimPrefix(v, "-"), true
		default:
			s.Workdir, s.WorkdirOptional = v, false
		}
		if s.Workdir != "" && !filepath.IsAbs(s.Workdir) {
			return p.fail(line, "WorkingDirectory=%s: must be an absolute path or ~", v)
		}
	case "User":
		if v != "" && !labelRE.MatchString(v) {
			return p.fail(line, "User=%q is not a user name", v)
		}
		s.User = v
	case "Group":
		p.warn(line, "Group=%s is not supported yet: replicas run with User='s primary and supplementary groups; ignored", v)
	case "Restart":
		switch v {
		case pidtable.RestartNo, pidtable.RestartOnFailure, pidtable.RestartAlways:
			s.Restart = v
		default:
			return p.fail(line, "Restart=%s: ssi supports no, on-failure and always", v)
		}
	case "RestartSec":
		d, err := ParseTimespan(v)
		if err != nil {
			return p.fail(line, "RestartSec=%s: %v", v, err)
		}
		s.RestartSec = d
	case "TimeoutStopSec":
		d, err := ParseTimespan(v)
		if err != nil {
			return p.fail(line, "TimeoutStopSec=%s: %v", v, err)
		}
		if d <= 0 || d > maxStopTimeout {
			return p.fail(line, "TimeoutStopSec=%s: between 1ms and %s", v, maxStopTimeout)
		}
		s.StopTimeout = d
	case "CPUQuota":
		pct, ok := strings.CutSuffix(v, "%")
		f, err := strconv.ParseFloat(pct, 64)
		if !ok || err != nil || f <= 0 || f > 100*1024 {
			return p.fail(line, "CPUQuota=%s: want a percentage of one CPU, like 50%% or 200%%", v)
		}
		s.CPUs = f / 100
	case "MemoryMax":
		n, err := parseBytes(v)
		if err != nil {
			return p.fail(line, "MemoryMax=%s: %v", v, err)
		}
		if n != 0 && n < 4<<20 {
			return p.fail(line, "MemoryMax=%s: at least 4M is needed to start a job", v)
		}
		s.Memory = n
	case "KillSignal":
		if _, err := parseSignal(v); err != nil {
			return p.fail(line, "KillSignal=%s: %v", v, err)
		}
		s.KillSignal = v
	default:
		p.warn(line, "[Service] %s= is not supported by ssi; ignored", name)
	}
	return nil
}

func (p *parser) ssi(name, v string, line int) error {
	s := &p.u.Spec
	switch name {
	case "Replicas":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxReplicas {
			return p.fail(line, "Replicas=%s: want a number from 1 to %d (scale a service to 0 with ssi service scale NAME 0)", v, MaxReplicas)
		}
		s.Replicas, p.haveRepl = n, true
	case "Spread":
		if v != pidtable.SpreadNode && v != pidtable.SpreadAny {
			return p.fail(line, "Spread=%s: want node (at most one replica per node) or any", v)
		}
		s.Spread = v
	case "Constraint":
		if v == "" {
			s.Constraints = nil
			return nil
		}
		k, val, ok := strings.Cut(v, "=")
		if !ok || !labelRE.MatchString(k) || val == "" {
			return p.fail(line, "Constraint=%s: want LABEL=VALUE (a node label, as given to ssi agent --label)", v)
		}
		if s.Constraints == nil {
			s.Constraints = map[string]string{}
		}
		s.Constraints[k] = val
	case "Migratable":
		b, err := parseBool(v)
		if err != nil {
			return p.fail(line, "Migratable=%s: %v", v, err)
		}
		p.migratable, p.migSet = b, true
	case "CheckpointEvery":
		d, err := ParseTimespan(v)
		if err != nil {
			return p.fail(line, "CheckpointEvery=%s: %v", v, err)
		}
		if d > 0 && d < minCheckpointEvery {
			return p.fail(line, "CheckpointEvery=%s: want %s or more (each checkpoint freezes the replica for its dump), or 0 for none", v, minCheckpointEvery)
		}
		s.CheckpointEvery = d
	default:
		p.warn(line, "[X-SSI] %s= is not an ssi directive (known: Replicas, Spread, Constraint, Migratable, CheckpointEvery); ignored", name)
	}
	return nil
}

// finish checks the unit as a whole and fills in defaults.
func (p *parser) finish() error {
	s := &p.u.Spec
	if p.exec == "" {
		return p.fail(0, "no ExecStart= in [Service]: a service needs a command")
	}
	env := mergeEnv(p.env, p.envFiles)
	argv, err := SplitCommand(p.exec, env)
	if err != nil {
		return p.fail(p.execLine, "ExecStart=: %v", err)
	}
	s.Argv, s.Env = argv, env
	if len(argv) == 0 {
		return p.fail(p.execLine, "ExecStart= names no command")
	}
	if !p.haveRepl {
		s.Replicas = 1
	}
	if p.migSet {
		s.Pinned = !p.migratable
	}
	Defaults(s)
	return nil
}

// Defaults fills a spec's unset fields with systemd's (and ssi's) defaults.
func Defaults(s *pidtable.ServiceSpec) {
	if s.Restart == "" {
		s.Restart = pidtable.RestartNo
	}
	if s.RestartSec == 0 {
		s.RestartSec = DefaultRestartSec
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	if s.KillSignal == "" {
		s.KillSignal = "SIGTERM"
	}
	if s.Spread == "" {
		s.Spread = pidtable.SpreadAny
	}
}

// mergeEnv is Environment= then EnvironmentFile= (which wins, as in
// systemd), a later assignment of a name replacing an earlier one in place.
func mergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := at[k]; ok {
				out[i] = kv
				continue
			}
			at[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseEnvFile reads NAME=VALUE lines; # and ; start comments; a value may
// be quoted with " or '.
func parseEnvFile(data []byte) ([]string, error) {
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' || t[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		k = strings.TrimSpace(strings.TrimPrefix(k, "export "))
		if !ok || !envNameRE.MatchString(k) {
			return nil, fmt.Errorf("line %d: want NAME=VALUE", i+1)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, k+"="+v)
	}
	return out, nil
}

// ParseTimespan parses a systemd time span: "5" (seconds), "5s", "100ms",
// "1min 30s", "2h"; units us, ms, s/sec, m/min, h/hr, d.
func ParseTimespan(v string) (time.Duration, error) {
	units := map[string]time.Duration{"us": time.Microsecond, "usec": time.Microsecond, "ms": time.Millisecond, "msec": time.Millisecond, "": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second, "m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute, "h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour, "d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour}
	s := strings.TrimSpace(v)
	if s == "" {
		return 0, errors.New("empty time span")
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("want a time span like 5s, 100ms or 1min 30s")
		}
		num, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("want a time span like 5s, 100ms or 1min 30s")
		}
		s = strings.TrimLeft(s[i:], " ")
		j := 0
		for j < len(s) && (s[j] >= 'a' && s[j] <= 'z') {
			j++
		}
		u, ok := units[s[:j]]
		if !ok {
			return 0, fmt.Errorf("unknown unit %q (us, ms, s, min, h, d)", s[:j])
		}
		total += time.Duration(num * float64(u))
		s = strings.TrimLeft(s[j:], " ")
	}
	return total, nil
}

// parseBytes parses MemoryMax=: bytes with an optional K, M, G or T suffix
// (powers of 1024), or infinity (0: no limit).
func parseBytes(v string) (int64, error) {
	if v == "infinity" {
		return 0, nil
	}
	mult := int64(1)
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult != 1 {
			v = v[:n-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, errors.New("want bytes with an optional K, M, G or T suffix, or infinity (percentages are not supported)")
	}
	return n * mult, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, errors.New("want yes or no")
}

// parseSignal accepts SIGTERM, TERM or a number.
func parseSignal(v string) (unix.Signal, error) {
	if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= 64 {
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(v)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, errors.New("want a signal name like SIGTERM, SIGINT, SIGHUP or a number")
}
