package checkpoint

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Why a restore does not finish. CRIU's restore takes the job's file locks
// again, and the kernel makes it wait for whoever holds them now; nothing in
// CRIU's log says so. WhyBlocked reads the kernel's lock table (/proc/locks)
// for the processes of a restore and names the lock, the file and the holder.

// Lock is one line of /proc/locks: a lock held or, with Waiting, waited for.
type Lock struct {
	ID      int    // the lock's number; a waiter has the number of the lock it waits for
	Waiting bool   // "->": PID waits for lock ID
	Kind    string // POSIX, FLOCK, OFDLCK, LEASE
	Mode    string // READ, WRITE (or a lease's state)
	PID     int    // -1 for OFD locks, which belong to no process
	Dev     uint64 // the file's device (unix.Mkdev of MAJ:MIN)
	Inode   uint64
}

// ParseLocks parses the text of /proc/locks; lines it cannot read are skipped.
func ParseLocks(text string) []Lock {
	var locks []Lock
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			continue
		}
		var l Lock
		id, err := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
		if err != nil {
			continue
		}
		l.ID, f = id, f[1:]
		if f[0] == "->" {
			l.Waiting, f = true, f[1:]
		}
		if len(f) < 5 {
			continue
		}
		// TYPE ADVISORY|MANDATORY|ACTIVE|BREAKING... MODE PID MAJ:MIN:INODE START END
		l.Kind, l.Mode = f[0], f[2]
		if l.PID, err = strconv.Atoi(f[3]); err != nil {
			continue
		}
		parts := strings.Split(f[4], ":")
		if len(parts) != 3 {
			continue
		}
		maj, err1 := strconv.ParseUint(parts[0], 16, 32)
		min, err2 := strconv.ParseUint(parts[1], 16, 32)
		ino, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		l.Dev, l.Inode = unix.Mkdev(uint32(maj), uint32(min)), ino
		locks = append(locks, l)
	}
	return locks
}

// Blocker is a lock one of a restore's processes waits for.
type Blocker struct {
	Waiter  int    // the waiting process
	Kind    string // POSIX, FLOCK, OFDLCK, LEASE
	Mode    string
	Holder  int    // the holder's PID; -1 for an OFD lock (held by an open file, not a process)
	Command string // the holder's command name, when known
	Path    string // the file, when one of the candidate paths is it
	Dev     uint64
	Inode   uint64
}

func (b Blocker) String() string {
	file := b.Path
	if file == "" {
		file = fmt.Sprintf("the file with inode %d on device %d:%d", b.Inode, unix.Major(b.Dev), unix.Minor(b.Dev))
	}
	who := "an open file description (an OFD lock) of some process"
	if b.Holder > 0 {
		who = fmt.Sprintf("process %d", b.Holder)
		if b.Command != "" {
			who += " (" + b.Command + ")"
		}
	}
	return fmt.Sprintf("the restore is waiting for a %s %s lock on %s held by %s", strings.ToLower(b.Mode), b.Kind, file, who)
}

// FindBlockers returns the locks that any of pids waits for, according to
// the lock table text (the content of /proc/locks), naming each file by the
// first of paths with its device and inode.
func FindBlockers(text string, pids []int, paths []string) []Blocker {
	locks := ParseLocks(text)
	ours := map[int]bool{}
	for _, p := range pids {
		ours[p] = true
	}
	type fileID struct{ dev, ino uint64 }
	names := map[fileID]string{}
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			if _, ok := names[fileID{st.Dev, st.Ino}]; !ok {
				names[fileID{st.Dev, st.Ino}] = p
			}
		}
	}
	var out []Blocker
	for _, w := range locks {
		if !w.Waiting || !ours[w.PID] {
			continue
		}
		for _, h := range locks {
			if h.Waiting || h.ID != w.ID {
				continue
			}
			b := Blocker{Waiter: w.PID, Kind: h.Kind, Mode: h.Mode, Holder: h.PID, Dev: h.Dev, Inode: h.Inode, Path: names[fileID{h.Dev, h.Inode}]}
			if h.PID > 0 {
				if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", h.PID)); err == nil {
					b.Command = strings.TrimSpace(string(c))
				}
			}
			out = append(out, b)
			break
		}
	}
	return out
}

// WhyBlocked says why the processes pids of a restore that did not finish
// are stuck: the locks they wait for (FindBlockers over /proc/locks), or
// else where in the kernel each one sleeps (/proc/PID/wchan). paths are the
// files the job uses, to name a lock's file.
func WhyBlocked(pids []int, paths []string) string {
	if b, err := os.ReadFile("/proc/locks"); err == nil {
		if bs := FindBlockers(string(b), pids, paths); len(bs) > 0 {
			reasons := make([]string, 0, len(bs))
			for _, b := range bs {
				reasons = append(reasons, b.String())
			}
			return strings.Join(reasons, "; ")
		}
	}
	var sleeps []string
	for _, pid := range pids {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
		if w := strings.TrimSpace(string(wchan)); w != "" && w != "0" {
			sleeps = append(sleeps, fmt.Sprintf("%d (%s) sleeps in %s", pid, strings.TrimSpace(string(comm)), w))
		}
	}
	if len(sleeps) == 0 {
		return "no process of the restore waits for a file lock"
	}
	return "no process of the restore waits for a file lock; " + strings.Join(sleeps, ", ")
}
