package supervisor

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssi-cluster/ssi/errdefs"
	"github.com/ssi-cluster/ssi/shim"
)

// Signal delivers sig to a job running here.
func (s *Supervisor) Signal(gpid uint64, sig syscall.Signal) error {
	// Under the lock: a migration or checkpoint cannot claim the job between
	// the check and the kill.
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[gpid]
	if j == nil && s.outgoing[gpid] != "" {
		return errdefs.Busyf("gpid %d is being migrated (its locks are being handed over): the signal was not sent; retry in a moment", gpid)
	}
	if j == nil {
		return errdefs.Conflictf("gpid %d is not running on node %s", gpid, s.cfg.Node)
	}
	if !j.state.Init.Alive() {
		return errdefs.Conflictf("gpid %d has just exited", gpid)
	}
	if j.busy != "" {
		// A signal to a frozen copy would be lost with it if the move
		// commits; the client retries, and reaches the job where it runs.
		return errdefs.Busyf("gpid %d is %s: the signal was not sent; retry in a moment (ssi kill and ssi run retry by themselves)", gpid, j.busy)
	}
	var err error
	switch sig {
	case syscall.SIGSTOP:
		// Init cannot catch SIGSTOP to forward it: stop the job's process group.
		err = unix.Kill(-j.state.MainPID, sig)
	default:
		// Init forwards catchable signals to the job's process group; SIGKILL kills
		// init and with it the whole PID namespace.
		err = unix.Kill(j.state.Init.PID, sig)
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal gpid %d: %w", gpid, err)
	}
	s.log.Info("signalled job", "gpid", gpid, "signal", unix.SignalName(sig))
	return nil
}

// HoldStdin stops the stdin of a job frozen for a migration and saves what
// its pipe held in the job dir (shim.StdinFile), to be shipped with its log.
// A job whose stdin is not fed by its shim has nothing to hold.
func (s *Supervisor) HoldStdin(ctx context.Context, j *Job) error {
	if j.state.StdinKey == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := shim.StdinCall(ctx, j.dir, shim.StdinRequest{Op: shim.StdinHold}, nil)
	if err == nil && st.Error != "" {
		err = errors.New(st.Error)
	}
	if err != nil {
		return fmt.Errorf("hold the stdin of gpid %d: %w", j.gpid, err)
	}
	return nil
}

// ReleaseStdin undoes HoldStdin: the migration rolled back and the job runs
// here again, the bytes its pipe held first.
func (s *Supervisor) ReleaseStdin(j *Job) {
	if j == nil || j.state.StdinKey == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.life), 10*time.Second)
	defer cancel()
	if _, err := shim.StdinCall(ctx, j.dir, shim.StdinRequest{Op: shim.StdinRelease}, nil); err != nil {
		s.log.Warn("release the stdin of a job whose migration rolled back", "gpid", j.gpid, "err", err)
	}
}
