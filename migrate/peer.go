package migrate

// Calls from the source to the target's migration steps, each with its bound.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/api"
)

func (m *migration) url(step string) string {
	return fmt.Sprintf("%s://%s/v1/migrations/%d/%s", m.mg.cfg.Scheme, m.target.Addr, m.gpid, step)
}

// stepTimeout bounds each call to the target, so that a target cut off
// mid-call fails the step (and the migration rolls back) in seconds rather
// than at the migration's overall bound. A restore may take as long as the
// target shim allows CRIU; the image transfer's bound grows with its size.
func (m *migration) stepTimeout(step string) time.Duration {
	switch step {
	case "restore":
		// 20 s plus 20 MB/s of images; the target shim gives CRIU 2 minutes.
		return min(20*time.Second+time.Duration(m.imageBytes/(20<<20))*time.Second, 2*time.Minute+10*time.Second)
	case "prepare":
		return 30 * time.Second
	case "resume":
		// After the commit the target resumes its copy by itself within
		// ~50 ms of reading the record (watchIncoming): the call only
		// saves that, so a cut network must not hold the migration long.
		return 3 * time.Second
	default: // abort
		return 10 * time.Second
	}
}

// transferTimeout bounds shipping n bytes of images: 15 s plus 20 MB/s, far
// below what any link that carries migrations does.
func transferTimeout(n int64) time.Duration {
	return 15*time.Second + time.Duration(n/(20<<20))*time.Second
}

// call POSTs a JSON request to a target migration step.
func (m *migration) call(ctx context.Context, step string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, m.stepTimeout(step))
	defer cancel()
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url(step), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	err = m.do(req, out)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		// Say which step did not answer and what bound it had, not a bare
		// "context deadline exceeded".
		why := "the node may be overloaded, or cut off"
		if step == "restore" {
			why = "CRIU's restore there may be blocked (on a file lock another process holds, say, or memory)"
		}
		return fmt.Errorf("node %s did not finish the %s step within %s: %s: %w", m.target.Name, step, m.stepTimeout(step), why, err)
	}
	return err
}

func (m *migration) do(req *http.Request, out any) error {
	req.Header.Set(api.HeaderForwarded, m.mg.cfg.Name)
	resp, err := m.mg.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("target %s: %w", m.target.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			return fmt.Errorf("target %s: HTTP %d: %s", m.target.Name, resp.StatusCode, bytes.TrimSpace(b))
		}
		return &e
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// resume continues a job left stopped by a dump or a restore.
func resume(j Job) { j.Cgroup().Signal(unix.SIGCONT) }

// killJob kills a job's init, and with it its PID namespace (unless it is
// gone already: its PID may have been reused).
func killJob(j Job) {
	if st := j.State(); st.Init.Alive() {
		_ = unix.Kill(st.Init.PID, unix.SIGKILL)
	}
}
