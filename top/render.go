package top

import (
	"fmt"
	"math"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/ssi-cluster/ssi/api"
	"github.com/ssi-cluster/ssi/internal/display"
)

var (
	styleHeader   = lipgloss.NewStyle().Reverse(true)
	styleSelected = lipgloss.NewStyle().Reverse(true).Bold(true)
	styleLoad     = lipgloss.NewStyle().Foreground(lipgloss.Color("2")) // green
	styleDemand   = lipgloss.NewStyle().Foreground(lipgloss.Color("1")) // red: wanted, not got
	styleMem      = lipgloss.NewStyle().Foreground(lipgloss.Color("4")) // blue
	styleDown     = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	styleDim      = lipgloss.NewStyle().Faint(true)
)

// nodeLines is how many lines the node bars take: at most a third of the
// screen, the last one saying how many more there are.
func (m *Model) nodeLines() int {
	n := len(m.snap.Nodes)
	limit := max((m.height-4)/3, 1)
	return min(n, limit)
}

// tableHeight is the number of process rows that fit: the screen less the
// summary, the node bars, the table's header and the two bottom lines.
func (m *Model) tableHeight() int {
	return max(m.height-m.nodeLines()-4, 1)
}

// View renders the screen.
func (m *Model) View() string {
	w := max(m.width, 20)
	var b strings.Builder
	line := func(s string) {
		b.WriteString(ansi.Truncate(s, w, ""))
		b.WriteByte('\n')
	}
	rows := m.rows()
	if !m.fetched {
		head := "ssi top - connecting..."
		if m.err != nil {
			head = "ssi top - error: " + m.err.Error()
		}
		line(head)
		return b.String()
	}
	head := summary(m.snap, len(rows))
	if m.err != nil {
		head = "refresh failed: " + m.err.Error()
	}
	line(head)

	nw := 4
	for _, n := range m.snap.Nodes {
		nw = max(nw, min(len(n.Name), 12))
	}
	rss := nodeRSS(m.snap.Procs)
	nl := m.nodeLines()
	for i, n := range m.snap.Nodes[:nl] {
		if i == nl-1 && nl < len(m.snap.Nodes) {
			line(styleDim.Render(fmt.Sprintf("... and %d more nodes (ssi top -b lists them all)", len(m.snap.Nodes)-nl+1)))
			break
		}
		line(nodeBar(n, rss[n.Name], nw, w))
	}

	line(styleHeader.Render(padRight(fmt.Sprintf("%6s %-*s %-8s %-4s %5s %6s %8s %s", "GPID", nw, "NODE", "USER", "STAT", "%CPU", "RSS", "ELAPSED", "COMMAND"), w)))
	h := m.tableHeight()
	for i := m.offset; i < m.offset+h; i++ {
		if i >= len(rows) {
			b.WriteByte('\n')
			continue
		}
		s := procRow(rows[i], nw, m)
		if i == m.cursor {
			line(styleSelected.Render(padRight(ansi.Truncate(s, w, ""), w)))
		} else {
			line(s)
		}
	}
	line(movesLine(m.snap))
	b.WriteString(ansi.Truncate(m.bottom(), w, ""))
	return b.String()
}

func padRight(s string, w int) string {
	if n := ansi.StringWidth(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

func procRow(p *api.ProcInfo, nw int, m *Model) string {
	cpu, mem := "-", "-"
	if p.Stats != nil {
		cpu, mem = fmt.Sprintf("%.1f", p.Stats.CPU), display.Bytes(p.Stats.RSS)
	}
	user := p.User
	if len(user) > 8 {
		user = user[:7] + "+"
	}
	return fmt.Sprintf("%6d %-*s %-8s %-4s %5s %6s %8s %s", p.GPID, nw, p.Node, user, stat(*p), cpu, mem, runTime(*p, m.snap.Time), display.CommandLine(p.Argv))
}

// nodeBar renders a node: name, a CPU bar (load in green, the demand it could
// not get in red, out of its CPUs), the figures, a memory bar (its jobs' RSS
// out of its memory) and its number of jobs.
func nodeBar(n api.NodeInfo, rss int64, nw, w int) string {
	name := n.Name
	if len(name) > nw {
		name = name[:nw-1] + "+"
	}
	if !n.Ready {
		return fmt.Sprintf("%-*s ", nw, name) + styleDown.Render("NotReady")
	}
	cpuText := fmt.Sprintf(" %4.2f/%-2g d%-5.2f", n.Load, n.CPUs, n.Demand)
	memText := fmt.Sprintf(" %5s/%-5s", display.Bytes(rss), display.Bytes(n.Memory))
	jobsText := fmt.Sprintf(" %3d jobs", n.Jobs)
	fixed := nw + 1 + len("cpu[]") + len(cpuText) + len(" mem[]") + len(memText) + len(jobsText)
	bw := max((w-fixed)/2, 4)
	return fmt.Sprintf("%-*s cpu[%s]%s mem[%s]%s%s", nw, name,
		cpuBar(n.Load, n.Demand, n.CPUs, bw), cpuText,
		bar(float64(rss), float64(n.Memory), bw, '|', styleMem), memText, jobsText)
}

// cells is how many of width cells v out of total fills (at least one for
// any v > 0).
func cells(v, total float64, width int) int {
	if total <= 0 || v <= 0 {
		return 0
	}
	return max(min(int(math.Round(v/total*float64(width))), width), 1)
}

func bar(v, total float64, width int, r rune, st lipgloss.Style) string {
	c := cells(v, total, width)
	return st.Render(strings.Repeat(string(r), c)) + strings.Repeat(" ", width-c)
}

func cpuBar(load, demand, cpus float64, width int) string {
	l := cells(load, cpus, width)
	d := max(cells(demand, cpus, width)-l, 0)
	return styleLoad.Render(strings.Repeat("|", l)) + styleDemand.Render(strings.Repeat("+", d)) + strings.Repeat(" ", width-l-d)
}

// bottom is the last line: a prompt, the last action's outcome, or the keys.
func (m *Model) bottom() string {
	switch m.mode {
	case modeFilter:
		return "filter (user:NAME node:NAME cmd:TEXT or text; Enter keeps, Esc clears): " + m.input + "_"
	case modeSignal:
		return fmt.Sprintf("signal to send to gpid %d (Enter sends, Esc cancels): %s_", m.target, m.input)
	case modeMigrate:
		var opts []string
		for i, c := range m.choices {
			s := fmt.Sprintf("%d:%s", i+1, c)
			if i == m.choice {
				s = styleSelected.Render("[" + s + "]")
			}
			opts = append(opts, s)
		}
		return fmt.Sprintf("migrate gpid %d to: %s (Enter, Esc)", m.target, strings.Join(opts, " "))
	}
	if m.msg != "" {
		return m.msg
	}
	f := ""
	if m.filter != "" {
		f = " [filter: " + m.filter + "]"
	}
	return fmt.Sprintf("q quit  sort:%s c/r/n/g  / filter  k kill  m migrate%s", strings.ToUpper(string(m.sort)), f)
}
