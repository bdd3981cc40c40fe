package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/hack/benchkit"
	"github.com/ssi-cluster/ssi/pidtable"
)

// measurement is one fault and how long its parts took; a zero duration is
// one not measured (an error, or not part of the variant).
type measurement struct {
	round   int
	variant variant
	// running: t0 to the job Running elsewhere (the service at 3 again).
	running time.Duration
	// notReady: t0 to the victim seen NotReady.
	notReady time.Duration
	// call: t0 to the controller's restore call; restore: its duration.
	call, restore time.Duration
	// fenceGap: the fence to the restored copy running (partition).
	fenceGap time.Duration
	fenced   bool
	// frozen, ckBytes: the job's automatic checkpoints before the fault (its
	// agent's log); copyBytes: the size of the copy restored from.
	frozen    []time.Duration
	ckBytes   []int64
	copyBytes int64
	err       string
}

// measure runs one measurement of v and cleans up after it.
func (b *bench) measure(ctx context.Context, v variant) (measurement, error) {
	if v.kind == "service" {
		return b.measureService(ctx)
	}
	return b.measureJob(ctx, v)
}

// measureJob: a checkpointed job on the victim, which dies (kill) or is cut
// off (partition).
func (b *bench) measureJob(ctx context.Context, v variant) (m measurement, err error) {
	src := fmt.Sprintf("import time\nb = bytearray(b'ssi-failover' * (%d * 1024 * 1024 // 12))\nwhile True:\n    time.sleep(1)\n", v.mib)
	wd := filepath.Join(b.wd, fmt.Sprintf("job-%d", time.Now().UnixNano()))
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return m, err
	}
	res, err := b.cl.API.Run(ctx, api.RunRequest{Argv: []string{"python3", "-c", src}, Node: victim, Workdir: wd, WorkdirExplicit: true, CheckpointEvery: b.o.every})
	if err != nil {
		return m, fmt.Errorf("start the job: %w", err)
	}
	gpid := res.GPID
	var heal func(context.Context) error
	defer func() {
		if cerr := b.cleanupJob(gpid, heal); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := b.waitCopied(ctx, gpid, int64(v.mib)<<20*9/10); err != nil {
		return m, err
	}
	var t0 time.Time
	if v.kind == "kill" {
		t0 = time.Now()
		if heal, err = b.killNode(victim, gpid); err != nil {
			return m, err
		}
	} else {
		t0 = time.Now()
		healLinks, err := b.cut(victim)
		if err != nil {
			return m, err
		}
		heal = func(context.Context) error { healLinks(); return nil }
	}
	// Poll: the victim NotReady, the job Running elsewhere.
	deadline := t0.Add(recoverLimit)
	for m.running == 0 {
		if m.notReady == 0 && !b.ready(ctx, victim) {
			m.notReady = time.Since(t0)
		}
		p, err := b.cl.API.Proc(ctx, gpid)
		if err == nil && p.State == pidtable.Running && p.Node != victim {
			m.running = time.Since(t0)
		}
		if m.running == 0 && time.Now().After(deadline) {
			return m, fmt.Errorf("gpid %d not running off %s %s after the fault (last: %s on %s, %v)", gpid, victim, recoverLimit, p.State, p.Node, err)
		}
		if err := benchkit.Sleep(ctx, pollEvery); err != nil {
			return m, err
		}
	}
	evAt, err := b.failoverEvent(ctx, gpid, t0, &m)
	if err != nil {
		return m, err
	}
	m.frozen, m.ckBytes = checkpointsLogged(b.agentLog(victim), gpid)
	if v.kind == "partition" {
		at, ok := fenceLogged(b.agentLog(victim), gpid, t0)
		if !ok {
			return m, fmt.Errorf("no \"fenced\" line for gpid %d in %s's agent log", gpid, victim)
		}
		m.fenced, m.fenceGap = true, evAt.Sub(at)
	}
	return m, nil
}

// waitCopied waits until gpid runs with rss bytes resident and copies of
// two of its automatic checkpoints are Ready off the victim (so that the
// freezes of two periods are measured before the fault).
func (b *bench) waitCopied(ctx context.Context, gpid uint64, rss int64) error {
	deadline := time.Now().Add(startLimit)
	for {
		p, perr := b.cl.API.Proc(ctx, gpid)
		cs, cerr := b.cl.API.Checkpoints(ctx)
		copies := 0
		for _, c := range cs {
			if c.GPID == gpid && c.Auto && c.CopyOf != "" && c.State == pidtable.Ready && c.Node != victim {
				copies++
			}
		}
		copied := copies >= 2
		if perr == nil && cerr == nil && copied && p.State == pidtable.Running && p.Stats != nil && p.Stats.RSS >= rss {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gpid %d not resident with a copied checkpoint after %s (copied %v, %v, %v)", gpid, startLimit, copied, perr, cerr)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// restoredIn is the restore's duration in a failover event's reason.
var restoredIn = regexp.MustCompile(`restored from checkpoint (\S+) .* in ([0-9.]+[a-zµ]+)$`)

// failoverEvent reads gpid's failover event: m's restore and call, the copy
// restored and its size; it returns the event's time.
func (b *bench) failoverEvent(ctx context.Context, gpid uint64, t0 time.Time, m *measurement) (time.Time, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, _, err := b.cl.API.Events(ctx, 0, gpid, 0)
		for _, e := range evs {
			if e.Kind != pidtable.EventFailover {
				continue
			}
			sm := restoredIn.FindStringSubmatch(e.Reason)
			if sm == nil {
				return time.Time{}, fmt.Errorf("failover event of gpid %d: %q", gpid, e.Reason)
			}
			d, err := time.ParseDuration(sm[2])
			if err != nil {
				return time.Time{}, fmt.Errorf("failover event of gpid %d: %q: %w", gpid, e.Reason, err)
			}
			m.restore, m.call = d, e.Time.Add(-d).Sub(t0)
			cs, _ := b.cl.API.Checkpoints(ctx)
			for _, c := range cs {
				if c.Name == sm[1] {
					m.copyBytes = c.Size
				}
			}
			return e.Time, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no failover event of gpid %d (last error: %v)", gpid, err)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

func (b *bench) agentLog(node string) string {
	n, err := b.node(node)
	if err != nil {
		return ""
	}
	return filepath.Join(n.DataDir, "agent.log")
}

// logLines calls fn with each line of the agent log at path and its fields
// (key=value, values unquoted).
func logLines(path string, fn func(kv map[string]string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fn(parseKV(sc.Text()))
	}
}

// parseKV splits a log/slog text line into its keys and values.
func parseKV(line string) map[string]string {
	kv := map[string]string{}
	for line != "" {
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			if q, err := strconv.QuotedPrefix(rest); err == nil {
				v, _ = strconv.Unquote(q)
				rest = rest[len(q):]
			} else {
				v, rest = rest, ""
			}
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		kv[strings.TrimSpace(k)] = v
		line = strings.TrimLeft(rest, " ")
	}
	return kv
}

// checkpointsLogged returns the frozen times and sizes of gpid's automatic
// checkpoints ("checkpointed", leave_running=true) in an agent log.
func checkpointsLogged(path string, gpid uint64) (frozen []time.Duration, size []int64) {
	g := strconv.FormatUint(gpid, 10)
	logLines(path, func(kv map[string]string) {
		if kv["msg"] != "checkpointed" || kv["gpid"] != g || kv["leave_running"] != "true" {
			return
		}
		if d, err := time.ParseDuration(kv["frozen"]); err == nil {
			frozen = append(frozen, d)
		}
		if n, err := strconv.ParseInt(kv["bytes"], 10, 64); err == nil {
			size = append(size, n)
		}
	})
	return frozen, size
}

// fenceLogged returns when the agent log says it fenced gpid, after t0.
func fenceLogged(path string, gpid uint64, t0 time.Time) (time.Time, bool) {
	g := strconv.FormatUint(gpid, 10)
	var at time.Time
	logLines(path, func(kv map[string]string) {
		if !strings.HasPrefix(kv["msg"], "fenced:") || kv["gpid"] != g || !at.IsZero() {
			return
		}
		if t, err := time.Parse(time.RFC3339Nano, kv["time"]); err == nil && t.After(t0) {
			at = t
		}
	})
	return at, !at.IsZero()
}

// cleanupJob heals the victim, kills the job, removes its checkpoints and
// waits for the victim to be Ready.
func (b *bench) cleanupJob(gpid uint64, heal func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), idleLimit+readyLimit)
	defer cancel()
	var errs []error
	if heal != nil {
		errs = append(errs, heal(ctx))
	}
	for ctx.Err() == nil {
		_ = b.cl.API.Signal(ctx, gpid, "KILL")
		p, err := b.cl.API.Proc(ctx, gpid)
		if err == nil && p.State.Ended() {
			break
		}
		_ = benchkit.Sleep(ctx, 500*time.Millisecond)
	}
	cs, _ := b.cl.API.Checkpoints(ctx)
	for _, c := range cs {
		if c.GPID == gpid {
			if err := b.cl.API.DeleteCheckpoint(ctx, c.Name); err != nil {
				b.log.Warn("remove checkpoint", "name", c.Name, "err", err)
			}
		}
	}
	errs = append(errs, b.waitReady(ctx, victim))
	return errors.Join(errs...)
}

// measureService: a node holding a replica of the 3-replica service dies;
// t0 to 3 replicas running on Ready, distinct nodes other than it.
func (b *bench) measureService(ctx context.Context) (m measurement, err error) {
	if err := b.applyService(ctx); err != nil {
		return m, err
	}
	reps, err := b.replicas(ctx, "")
	if err != nil {
		return m, err
	}
	dead := ""
	for _, r := range reps {
		if r.Node != "node1" {
			dead = r.Node
			break
		}
	}
	if dead == "" {
		return m, fmt.Errorf("no replica off node1: %v", reps)
	}
	t0 := time.Now()
	heal, err := b.killNode(dead, 0)
	defer func() {
		if heal == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), readyLimit)
		defer cancel()
		if herr := errors.Join(heal(cctx), b.waitReady(cctx, dead)); herr != nil && err == nil {
			err = herr
		}
		if werr := b.waitService(cctx); werr != nil && err == nil {
			err = werr
		}
	}()
	if err != nil {
		return m, err
	}
	deadline := t0.Add(recoverLimit)
	for m.running == 0 {
		if m.notReady == 0 && !b.ready(ctx, dead) {
			m.notReady = time.Since(t0)
		}
		reps, err := b.replicas(ctx, dead)
		if err == nil && len(reps) == 3 {
			m.running = time.Since(t0)
		}
		if m.running == 0 && time.Now().After(deadline) {
			return m, fmt.Errorf("service not back to 3 off %s %s after the kill (%d, %v)", dead, recoverLimit, len(reps), err)
		}
		if err := benchkit.Sleep(ctx, pollEvery); err != nil {
			return m, err
		}
	}
	return m, nil
}

// applyService applies the service unit once and waits for 3 replicas.
func (b *bench) applyService(ctx context.Context) error {
	if !b.svcUp {
		unit := filepath.Join(b.wd, serviceName+".service")
		body := "[Service]\nExecStart=/bin/sleep 100000\nRestart=always\nRestartSec=200ms\n[X-SSI]\nReplicas=3\nSpread=node\n"
		if err := os.WriteFile(unit, []byte(body), 0o644); err != nil {
			return err
		}
		if _, err := b.ssi(ctx, "apply", unit); err != nil {
			return err
		}
		b.svcUp = true
	}
	return b.waitService(ctx)
}

// waitService waits until the service has 3 running replicas on Ready,
// distinct nodes.
func (b *bench) waitService(ctx context.Context) error {
	deadline := time.Now().Add(recoverLimit)
	for {
		reps, err := b.replicas(ctx, "")
		if err == nil && len(reps) == 3 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service %s not at 3 replicas after %s (%d, %v)", serviceName, recoverLimit, len(reps), err)
		}
		if err := benchkit.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// replicas returns the service's replicas Running on Ready nodes other than
// not, one per node.
func (b *bench) replicas(ctx context.Context, not string) ([]api.ProcInfo, error) {
	ps, err := b.cl.API.PS(ctx, "", false)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []api.ProcInfo
	for _, p := range ps {
		if p.Service == serviceName && p.State == pidtable.Running && p.NodeReady && p.Node != not && !seen[p.Node] {
			seen[p.Node] = true
			out = append(out, p)
		}
	}
	return out, nil
}
