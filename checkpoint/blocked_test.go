package checkpoint

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestParseLocks reads the kinds of line /proc/locks has: held and waited
// for, POSIX, FLOCK, OFD and leases.
func TestParseLocks(t *testing.T) {
	text := `1: POSIX  ADVISORY  WRITE 2102 fe:00:10005582 0 EOF
1: -> POSIX  ADVISORY  WRITE 3000 fe:00:10005582 0 EOF
2: FLOCK  ADVISORY  WRITE 123 00:1f:555 0 EOF
3: LEASE  ACTIVE    READ 31850 fe:00:77 0 EOF
4: OFDLCK ADVISORY  READ  -1 fe:00:88 0 EOF
garbage
`
	got := ParseLocks(text)
	if len(got) != 5 {
		t.Fatalf("parsed %d locks, want 5: %+v", len(got), got)
	}
	w := got[1]
	if !w.Waiting || w.ID != 1 || w.PID != 3000 || w.Kind != "POSIX" || w.Mode != "WRITE" || w.Inode != 10005582 || w.Dev != unix.Mkdev(0xfe, 0) {
		t.Errorf("waiter: %+v", w)
	}
	if f := got[2]; f.Kind != "FLOCK" || f.Dev != unix.Mkdev(0, 0x1f) || f.Inode != 555 {
		t.Errorf("flock: %+v", f)
	}
	if l := got[3]; l.Kind != "LEASE" || l.Mode != "READ" || l.PID != 31850 {
		t.Errorf("lease: %+v", l)
	}
	if o := got[4]; o.Kind != "OFDLCK" || o.PID != -1 {
		t.Errorf("ofd: %+v", o)
	}
}

// TestFindBlockers names the holder and the file of a lock one of the
// restore's processes waits for, and nothing for processes that wait for
// nothing.
func TestFindBlockers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	dev := func() string { return hex(unix.Major(st.Dev)) + ":" + hex(unix.Minor(st.Dev)) }
	self := os.Getpid()
	text := "1: POSIX  ADVISORY  WRITE " + itoa(self) + " " + dev() + ":" + itoa(int(st.Ino)) + " 0 EOF\n" +
		"1: -> POSIX  ADVISORY  WRITE 4242 " + dev() + ":" + itoa(int(st.Ino)) + " 0 EOF\n"
	bs := FindBlockers(text, []int{4242}, []string{"/nonexistent", path})
	if len(bs) != 1 {
		t.Fatalf("blockers: %+v", bs)
	}
	msg := bs[0].String()
	for _, want := range []string{"write POSIX lock", path, "process " + itoa(self), "(checkpoint.test)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if bs := FindBlockers(text, []int{1}, nil); len(bs) != 0 {
		t.Errorf("a process that waits for nothing has blockers: %+v", bs)
	}
}

func hex(v uint32) string { return strconv.FormatUint(uint64(v), 16) }
func itoa(v int) string   { return strconv.Itoa(v) }
