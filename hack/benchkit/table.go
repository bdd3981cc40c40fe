package benchkit

import (
	"io"
	"strings"
)

// Table is a markdown table as the reports print it and docs/BENCHMARKS*.md
// quote it: a header row, an alignment row, one row per Add.
type Table struct {
	header []string
	right  []bool
	rows   [][]string
}

// NewTable returns a table with these column headers. A header ending in ":"
// is a right-aligned (numbers) column; the colon is not printed.
func NewTable(header ...string) *Table {
	t := &Table{}
	for _, h := range header {
		name, right := strings.CutSuffix(h, ":")
		t.header = append(t.header, name)
		t.right = append(t.right, right)
	}
	return t
}

// Add appends a row; missing cells are left empty. A "|" in a cell is
// escaped, so that error messages quoted in a cell keep the table whole.
func (t *Table) Add(cells ...string) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	t.rows = append(t.rows, row)
}

// Len is the number of rows.
func (t *Table) Len() int { return len(t.rows) }

// Write prints the table, or nothing if it has no rows.
func (t *Table) Write(w io.Writer) error {
	if len(t.rows) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString(row(t.header))
	b.WriteString("|")
	for _, r := range t.right {
		if r {
			b.WriteString("--:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for _, cells := range t.rows {
		for len(cells) < len(t.header) {
			cells = append(cells, "")
		}
		b.WriteString(row(cells))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func row(cells []string) string {
	return "| " + strings.Join(cells, " | ") + " |\n"
}
