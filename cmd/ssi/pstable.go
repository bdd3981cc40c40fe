package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
)

// ssi ps prints rows as they arrive, in memory that does not grow with the
// table: a table's column widths are taken from its first rows (as kubectl
// get does with chunked lists), and -o json writes the array element by
// element, byte for byte what encoding the whole list would have written.

// rowWriter is where ssi ps puts its rows.
type rowWriter interface {
	add(api.ProcInfo) error
	// close writes what is held; complete says the listing is whole (a
	// JSON array is closed only then).
	close(complete bool) error
}

const (
	// widthRows rows, or what came in widthWait, set the column widths.
	widthRows = 200
	widthWait = 200 * time.Millisecond
	// flushEvery bounds how long a printed row waits in the buffer.
	flushEvery = 100 * time.Millisecond
)

// procTable prints ps rows in aligned columns.
type procTable struct {
	w     *bufio.Writer
	wide  bool
	now   time.Time
	start time.Time
	// head holds the rows (cells, the last one the command) until the
	// widths are set; widths is nil until then.
	head      [][]string
	widths    []int
	row       []string // cells' slice, once the widths are set
	lastFlush time.Time
}

func newProcTable(w io.Writer, wide bool, now time.Time) *procTable {
	t := &procTable{w: bufio.NewWriterSize(w, 64<<10), wide: wide, now: now, start: time.Now()}
	hdr := []string{"GPID", "NODE", "PID", "USER", "STAT", "%CPU", "RSS", "ELAPSED"}
	if wide {
		hdr = append(hdr, "STATE", "CPUS", "MEMORY", "PIN", "STARTED")
	}
	t.head = append(t.head, append(hdr, "COMMAND"))
	return t
}

func (t *procTable) add(p api.ProcInfo) error {
	if t.widths == nil {
		t.head = append(t.head, t.cells(nil, &p))
		if len(t.head) <= widthRows && time.Since(t.start) < widthWait {
			return nil
		}
		t.setWidths()
		return t.flushIfDue()
	}
	// Once the widths are set a row is printed at once: its cells go in
	// one slice, used again for each.
	t.row = t.cells(t.row[:0], &p)
	t.print(t.row)
	return t.flushIfDue()
}

func (t *procTable) close(bool) error {
	if t.widths == nil {
		t.setWidths()
	}
	return t.w.Flush()
}

// setWidths fixes the widths from the rows held, and prints them.
func (t *procTable) setWidths() {
	t.widths = make([]int, len(t.head[0])-1)
	for _, row := range t.head {
		for i := range t.widths {
			t.widths[i] = max(t.widths[i], len(row[i]))
		}
	}
	for _, row := range t.head {
		t.print(row)
	}
	t.head = nil
}

// print writes one row: each cell padded to its column's width and two
// spaces (tabwriter's padding), the command last.
func (t *procTable) print(row []string) {
	for i, w := range t.widths {
		c := row[i]
		t.w.WriteString(c)
		t.pad(max(w-len(c), 0) + 2)
	}
	t.w.WriteString(row[len(row)-1])
	t.w.WriteByte('\n')
}

// spaces is what pad writes from.
var spaces = []byte(strings.Repeat(" ", 64))

// pad writes n spaces (not strings.Repeat: one allocation per cell, of
// every one of 100,000 rows, was a tenth of the printing's time).
func (t *procTable) pad(n int) {
	for n > 0 {
		k := min(n, len(spaces))
		t.w.Write(spaces[:k])
		n -= k
	}
}

func (t *procTable) flushIfDue() error {
	if time.Since(t.lastFlush) < flushEvery {
		return nil
	}
	t.lastFlush = time.Now()
	return t.w.Flush()
}

// cells appends p's cells to row (nil: a new slice) and returns it.
func (t *procTable) cells(row []string, p *api.ProcInfo) []string {
	stat, cpu, rss := statOf(p), "-", "-"
	if p.Stats != nil {
		cpu, rss = strconv.FormatFloat(p.Stats.CPU, 'f', 1, 64), display.Bytes(p.Stats.RSS) // %.1f
	}
	pid := "-"
	if p.PID > 0 {
		pid = strconv.Itoa(p.PID)
	}
	if row == nil {
		row = make([]string, 0, 14) // the wide table's cells
	}
	row = append(row, strconv.FormatUint(p.GPID, 10), p.Node, pid, p.User, stat, cpu, rss, elapsed(p.Proc, t.now))
	command := display.CommandLine(p.Argv)
	if p.Service != "" {
		command = "[" + p.Service + "] " + command
	}
	if t.wide {
		cpus, mem := "-", "-"
		if p.CPUs > 0 {
			cpus = strconv.FormatFloat(p.CPUs, 'g', -1, 64)
		}
		if p.Memory > 0 {
			mem = display.Bytes(p.Memory)
		}
		pin := "-"
		if p.Pinned {
			pin = "pin"
		}
		row = append(row, string(p.State), cpus, mem, pin, p.Created.Local().Format(time.DateTime))
	} else if len(command) > 60 {
		command = command[:57] + "..."
	}
	return append(row, command)
}

// jsonRows writes ps -o json: one indented JSON array, element by element.
type jsonRows struct {
	w    *bufio.Writer
	n    int
	last time.Time
}

func newJSONRows(w io.Writer) *jsonRows { return &jsonRows{w: bufio.NewWriterSize(w, 64<<10)} }

func (j *jsonRows) add(p api.ProcInfo) error {
	b, err := json.MarshalIndent(p, "  ", "  ")
	if err != nil {
		return fmt.Errorf("encode gpid %d: %w", p.GPID, err)
	}
	if j.n == 0 {
		j.w.WriteString("[\n  ")
	} else {
		j.w.WriteString(",\n  ")
	}
	j.n++
	j.w.Write(b)
	if time.Since(j.last) >= flushEvery {
		j.last = time.Now()
		return j.w.Flush()
	}
	return nil
}

func (j *jsonRows) close(complete bool) error {
	switch {
	case !complete:
	case j.n == 0:
		j.w.WriteString("[]\n")
	default:
		j.w.WriteString("\n]\n")
	}
	return j.w.Flush()
}
