package calendar

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ssi-cluster/ssi/internal/testenv"
)

// TestAgainstSystemd compares Parse and Next with systemd itself: for every
// expression of testdata/corpus.txt, `systemd-analyze calendar` must accept
// it exactly when Parse does, and for the accepted ones print the same next
// elapses (iterations) from each base time.
//
// The method: systemd-analyze (systemd ≥ 248) takes --base-time=@EPOCH, so
// both sides start from the same fixed instants, independent of the clock.
// It runs with TZ=UTC, so it prints UTC and evaluates zone-less events in
// UTC; Next gets the base in time.UTC, so zone-less events are evaluated in
// UTC too. Events naming a zone are evaluated in that zone by both. systemd
// prints whole seconds: elapses are compared truncated to the second, but
// each iteration starts from the exact previous elapse on both sides, so a
// difference in the fractions shows up in later iterations.
func TestAgainstSystemd(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Skip(t, "systemd-analyze not found (apt-get install systemd): %v", err)
	}
	exprs := readCorpus(t)
	if len(exprs) < 300 {
		t.Fatalf("corpus has %d expressions, want at least 300", len(exprs))
	}
	bases := []time.Time{
		time.Unix(1767225600, 0).UTC(), // 2026-01-01 00:00:00, a Thursday
		time.Unix(1774742399, 0).UTC(), // 2026-03-28 23:59:59, before Europe's spring DST change
		time.Unix(1835352000, 0).UTC(), // 2028-02-28 12:00:00, before a leap day
	}
	const iterations = 6
	valid, invalid := 0, 0
	for _, expr := range exprs {
		if e, known := strings.CutPrefix(expr, "! "); known {
			if _, err := Parse(e); err != nil {
				t.Errorf("%q: %v", e, err)
			}
			if _, ok := systemdElapses(t, sa, e, bases[0], iterations); ok {
				t.Errorf("%q: listed as a known difference, but systemd now computes its elapses: compare them", e)
			}
			continue
		}
		for bi, base := range bases {
			want, ok := systemdElapses(t, sa, expr, base, iterations)
			spec, perr := Parse(expr)
			if ok != (perr == nil) {
				t.Errorf("%q: systemd accepts=%v, Parse err=%v", expr, ok, perr)
				break
			}
			if !ok {
				if bi == 0 {
					invalid++
				}
				break
			}
			if bi == 0 {
				valid++
			}
			var got []string
			at := base
			for range iterations {
				at = spec.Next(at)
				if at.IsZero() {
					break
				}
				got = append(got, at.UTC().Format(time.DateTime))
			}
			if strings.Join(got, ", ") != strings.Join(want, ", ") {
				t.Errorf("%q from %s:\n got  %v\n want %v (systemd)", expr, base.Format(time.DateTime), got, want)
			}
		}
	}
	t.Logf("%d expressions: %d valid, %d invalid; %d base times, %d iterations each", len(exprs), valid, invalid, len(bases), iterations)
}

func readCorpus(t *testing.T) []string {
	f, err := os.Open("testdata/corpus.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// systemdElapses runs systemd-analyze calendar and returns the elapses it
// prints (UTC, to the second), and whether it accepted expr.
func systemdElapses(t *testing.T, sa, expr string, base time.Time, n int) ([]string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sa, "calendar", fmt.Sprintf("--base-time=@%d", base.Unix()), fmt.Sprintf("--iterations=%d", n), "--", expr)
	cmd.Env = append(os.Environ(), "TZ=UTC", "SYSTEMD_COLORS=0", "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		if _, ok := err.(*exec.ExitError); ok && !strings.Contains(string(out), "Next elapse") {
			return nil, false
		}
		t.Fatalf("systemd-analyze calendar %q: %v\n%s", expr, err, out)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		var v string
		switch {
		case strings.HasPrefix(l, "Next elapse: "):
			v = strings.TrimPrefix(l, "Next elapse: ")
		case strings.HasPrefix(l, "Iter. #"):
			_, v, _ = strings.Cut(l, ": ")
		default:
			continue
		}
		if v == "never" {
			break
		}
		ts, err := time.Parse("Mon 2006-01-02 15:04:05 MST", v)
		if err != nil {
			t.Fatalf("systemd-analyze printed %q for %q: %v", v, expr, err)
		}
		got = append(got, ts.UTC().Format(time.DateTime))
	}
	return got, true
}

// TestRandomAgainstSystemd compares Parse and Next with systemd on
// expressions drawn at random (a fixed seed: the same ones each run) from
// the grammar's pieces, valid and invalid combinations alike.
func TestRandomAgainstSystemd(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Skip(t, "systemd-analyze not found (apt-get install systemd): %v", err)
	}
	n, seed := 300, uint64(18)
	if v := os.Getenv("SSI_CALENDAR_RANDOM"); v != "" { // more, another seed: SSI_CALENDAR_RANDOM=3000
		fmt.Sscan(v, &n)
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	num := func(lo, hi int) string { return fmt.Sprint(lo + rng.IntN(hi-lo+1)) }
	field := func(lo, hi int) string {
		switch rng.IntN(7) {
		case 0:
			return "*"
		case 1:
			return num(lo, hi)
		case 2:
			return num(lo, hi) + "/" + num(1, hi-lo+2)
		case 3:
			return num(lo, hi) + ".." + num(lo, hi)
		case 4:
			return num(lo, hi) + ".." + num(lo, hi) + "/" + num(1, 5)
		case 5:
			return num(lo, hi) + "," + num(lo, hi)
		}
		return num(lo, hi) + "," + num(lo, hi) + ".." + num(lo, hi)
	}
	base := time.Unix(1767225600, 0).UTC()
	valid, invalid := 0, 0
	for range n {
		var b strings.Builder
		if rng.IntN(3) == 0 {
			b.WriteString(pick("Mon", "Tue..Thu", "Sat,Sun", "Fri", "Mon..Fri", "Wed,Fri..Sun", "Sun..Mon") + " ")
		}
		switch rng.IntN(4) {
		case 0:
			b.WriteString(field(2026, 2030) + "-" + field(1, 12) + "-" + field(1, 31) + " ")
		case 1:
			b.WriteString(field(1, 12) + "-" + field(1, 31) + " ")
		case 2:
			b.WriteString("*-" + field(1, 12) + "~" + field(1, 10) + " ")
		}
		b.WriteString(field(0, 24) + ":" + field(0, 60))
		if rng.IntN(2) == 0 {
			b.WriteString(":" + field(0, 60))
			if rng.IntN(4) == 0 {
				b.WriteString("." + num(0, 999))
			}
		}
		if rng.IntN(6) == 0 {
			b.WriteString(pick(" UTC", " Europe/Berlin", " America/New_York", " Asia/Tokyo"))
		}
		expr := b.String()
		want, ok := systemdElapses(t, sa, expr, base, 4)
		spec, perr := Parse(expr)
		if ok != (perr == nil) {
			t.Errorf("%q: systemd accepts=%v, Parse err=%v", expr, ok, perr)
			continue
		}
		if !ok {
			invalid++
			continue
		}
		valid++
		var got []string
		at := base
		for range 4 {
			if at = spec.Next(at); at.IsZero() {
				break
			}
			got = append(got, at.UTC().Format(time.DateTime))
		}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("%q:\n got  %v\n want %v (systemd)", expr, got, want)
		}
	}
	t.Logf("%d random expressions (seed %d): %d valid, %d invalid", n, seed, valid, invalid)
}
