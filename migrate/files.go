package migrate

import (
	"fmt"
	"os"
	"strings"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/errdefs"
)

// The files a job maps or holds open. CRIU restores such a file only if it
// finds it at the path, with the size it had at the dump ("File X has bad
// size"). A migration checks twice, each time when the check can say
// something true: at prepare, that the target sees the files the job maps
// (its program, its libraries: a running job's open files come and go, and a
// running job may be appending to them); after the transfer, that every file
// it maps or holds open is there with the size it had when the job was frozen
// for the dump (the job itself cannot have changed it since). A checkpoint records
// the sizes at its dump and its restore compares them.

// JobFiles lists the files the job's processes map, and unless mappedOnly the
// files they hold open, with their sizes: the target must have each of them,
// with the same size. A running job opens and removes files all the time (a
// database's journal, a compiler's temporary files), so only its mappings
// (its program and libraries, mapped data) are worth checking before it is
// frozen.
func JobFiles(j Job, mappedOnly bool) ([]api.FileCheck, error) {
	pids, err := j.Cgroup().Pids()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []api.FileCheck
	add := func(path string) {
		if !strings.HasPrefix(path, "/") || seen[path] || strings.HasSuffix(path, " (deleted)") {
			return
		}
		seen[path] = true
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			out = append(out, api.FileCheck{Path: path, Size: fi.Size()})
		}
	}
	for _, pid := range pids {
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			continue // exited meanwhile
		}
		for _, line := range strings.Split(string(maps), "\n") {
			if f := strings.Fields(line); len(f) >= 6 {
				add(strings.Join(f[5:], " "))
			}
		}
		if mappedOnly {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if t, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil {
				add(t)
			}
		}
	}
	return out, nil
}

// CheckFilesPresent checks that node has the job's working directory and every
// file the job uses (prepare: the sizes are checked after the dump).
func CheckFilesPresent(node string, files []api.FileCheck, workdir string) error {
	for _, f := range files {
		if _, err := os.Stat(f.Path); err != nil {
			return errdefs.Conflictf("node %s lacks %s, which the job uses: %v", node, f.Path, err)
		}
	}
	if fi, err := os.Stat(workdir); err != nil || !fi.IsDir() {
		return errdefs.Conflictf("node %s lacks the job's working directory %s", node, workdir)
	}
	return nil
}

// CheckFileSizes checks that every file the job uses has on node the size it
// had when the job was frozen; when says when that was ("the job was frozen
// for its move", "checkpoint C was taken") and retry what to do about it.
func CheckFileSizes(node string, files []api.FileCheck, when, retry string) error {
	for _, f := range files {
		fi, err := os.Stat(f.Path)
		if err != nil {
			return errdefs.Conflictf("node %s lacks %s, which the job uses (it had it when %s): %v; %s", node, f.Path, when, err, retry)
		}
		if fi.Size() != f.Size {
			return errdefs.Conflictf("%s is %d bytes on node %s but was %d bytes when %s: something other than the job changed it since (the job was stopped), and CRIU restores a file the job holds open only at the size it had; %s", f.Path, fi.Size(), node, f.Size, when, retry)
		}
	}
	return nil
}
