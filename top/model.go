package top

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/ssi-cluster/ssi/api"
)

// mode is what the keyboard is doing.
type mode int

const (
	modeBrowse  mode = iota
	modeFilter       // typing a filter after /
	modeSignal       // typing a signal after k
	modeMigrate      // choosing a node after m
)

// Model is the interactive view (a bubbletea model).
type Model struct {
	ctx  context.Context
	src  Source
	opts Options

	snap    Snapshot
	gen     int   // counts snapshots, for the rows' cache
	fetched bool  // a snapshot arrived
	err     error // the last refresh's error
	width   int
	height  int

	sort   SortKey
	filter string
	sel    uint64 // the selected gpid (kept across refreshes)
	cursor int    // its index in the shown rows
	offset int    // first shown row

	shown    []*api.ProcInfo // rows() for shownKey
	shownKey rowsKey

	mode    mode
	input   string   // the filter or signal being typed
	target  uint64   // gpid the signal or migration is for
	choices []string // nodes to migrate to
	choice  int
	msg     string // the last action's outcome
}

// New returns the interactive view reading from src.
func New(ctx context.Context, src Source, o Options) *Model {
	o = o.withDefaults()
	return &Model{ctx: ctx, src: src, opts: o, sort: o.Sort, filter: o.Filter, width: 80, height: 24}
}

// Run shows the view on the terminal until the user quits or ctx ends.
func Run(ctx context.Context, src Source, o Options) error {
	p := tea.NewProgram(New(ctx, src, o), tea.WithAltScreen(), tea.WithContext(ctx))
	_, err := p.Run()
	if err != nil && ctx.Err() != nil {
		return nil // interrupted: not a failure
	}
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	return nil
}

type snapshotMsg struct {
	snap Snapshot
	err  error
}

type tickMsg struct{}

type doneMsg struct {
	text string
	err  error
}

func (m *Model) fetch() tea.Msg {
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	s, err := m.src.Snapshot(ctx)
	return snapshotMsg{snap: s, err: err}
}

// Init starts the first refresh.
func (m *Model) Init() tea.Cmd { return m.fetch }

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.clamp()
	case snapshotMsg:
		if msg.err != nil {
			m.err = msg.err
		} else {
			m.snap, m.err, m.fetched = msg.snap, nil, true
			m.gen++
			m.clamp()
		}
		return m, tea.Tick(m.opts.Interval, func(time.Time) tea.Msg { return tickMsg{} })
	case tickMsg:
		return m, m.fetch
	case doneMsg:
		if msg.err != nil {
			m.msg = "error: " + msg.err.Error()
		} else {
			m.msg = msg.text
		}
		return m, m.fetch
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

// rowsKey is what the shown rows depend on.
type rowsKey struct {
	gen    int
	sort   SortKey
	filter string
}

// rows are the processes shown, in order (computed once per snapshot, sort
// key and filter).
func (m *Model) rows() []*api.ProcInfo {
	k := rowsKey{m.gen, m.sort, m.filter}
	if m.shown == nil || k != m.shownKey {
		m.shown, m.shownKey = view(m.snap.Procs, m.sort, m.filter), k
	}
	return m.shown
}

// clamp keeps the selection on the selected gpid if it is still shown, else
// at the same index, and in the visible window.
func (m *Model) clamp() {
	rows := m.rows()
	if i := slices.IndexFunc(rows, func(p *api.ProcInfo) bool { return p.GPID == m.sel }); i >= 0 {
		m.cursor = i
	}
	m.cursor = max(min(m.cursor, len(rows)-1), 0)
	if len(rows) > 0 {
		m.sel = rows[m.cursor].GPID
	} else {
		m.sel = 0
	}
	h := m.tableHeight()
	if m.cursor < m.offset {
		m.offset = m.cursor
	}
	if m.cursor >= m.offset+h {
		m.offset = m.cursor - h + 1
	}
	m.offset = max(min(m.offset, len(rows)-h), 0)
}

func (m *Model) move(delta int) {
	rows := m.rows()
	m.cursor = max(min(m.cursor+delta, len(rows)-1), 0)
	if len(rows) > 0 {
		m.sel = rows[m.cursor].GPID
	}
	m.clamp()
}

func (m *Model) selected() (api.ProcInfo, bool) {
	for _, p := range m.snap.Procs {
		if p.GPID == m.sel && m.sel != 0 {
			return p, true
		}
	}
	return api.ProcInfo{}, false
}

func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if k.Type == tea.KeyCtrlC {
		return m, tea.Quit
	}
	if k.Type == tea.KeyRunes && len(k.Runes) > 1 && !k.Paste {
		// Keys typed faster than read arrive together ("/node3"): one at a
		// time, so that the first can switch modes.
		var cmds []tea.Cmd
		for _, r := range k.Runes {
			_, cmd := m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: k.Alt})
			cmds = append(cmds, cmd)
		}
		return m, tea.Batch(cmds...)
	}
	switch m.mode {
	case modeFilter:
		return m.filterKey(k)
	case modeSignal:
		return m.signalKey(k)
	case modeMigrate:
		return m.migrateKey(k)
	}
	switch k.String() {
	case "q", "esc":
		return m, tea.Quit
	case "up", "ctrl+p":
		m.move(-1)
	case "down", "ctrl+n", "j":
		m.move(1)
	case "pgup":
		m.move(-m.tableHeight())
	case "pgdown", " ":
		m.move(m.tableHeight())
	case "home":
		m.move(-len(m.snap.Procs))
	case "end":
		m.move(len(m.snap.Procs))
	case "c", "P":
		m.sort = SortCPU
	case "r", "M":
		m.sort = SortRSS
	case "n", "N":
		m.sort = SortNode
	case "g", "p":
		m.sort = SortGPID
	case "/":
		m.mode, m.input, m.msg = modeFilter, m.filter, ""
	case "k":
		if p, ok := m.selected(); ok {
			m.mode, m.target, m.input, m.msg = modeSignal, p.GPID, "TERM", ""
		}
	case "m":
		if p, ok := m.selected(); ok {
			m.choices = nil
			for _, n := range m.snap.Nodes {
				if n.Ready && n.Name != p.Node {
					m.choices = append(m.choices, n.Name)
				}
			}
			if len(m.choices) == 0 {
				m.msg = "no other Ready node to migrate to"
				break
			}
			m.mode, m.target, m.choice, m.msg = modeMigrate, p.GPID, 0, ""
		}
	case "ctrl+l":
		return m, m.fetch
	}
	m.clamp()
	return m, nil
}

// edit applies a key to a line being typed; it reports false for keys that
// are not editing.
func edit(s *string, k tea.KeyMsg) bool {
	switch k.Type {
	case tea.KeyBackspace:
		if r := []rune(*s); len(r) > 0 {
			*s = string(r[:len(r)-1])
		}
	case tea.KeyCtrlU:
		*s = ""
	case tea.KeyRunes, tea.KeySpace:
		*s += string(k.Runes)
	default:
		return false
	}
	return true
}

func (m *Model) filterKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.Type {
	case tea.KeyEnter:
		m.mode = modeBrowse
	case tea.KeyEsc:
		m.mode, m.filter = modeBrowse, ""
	default:
		if edit(&m.input, k) {
			m.filter = m.input // filter as you type
		}
	}
	m.clamp()
	return m, nil
}

func (m *Model) signalKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.Type {
	case tea.KeyEnter:
		sig, gpid := m.input, m.target
		if _, err := api.ParseSignal(sig); err != nil {
			m.msg = "error: " + err.Error()
			return m, nil
		}
		m.mode = modeBrowse
		m.msg = fmt.Sprintf("sending %s to gpid %d...", sig, gpid)
		return m, func() tea.Msg {
			ctx, cancel := context.WithTimeout(m.ctx, 2*time.Minute)
			defer cancel()
			if err := m.src.Signal(ctx, gpid, sig); err != nil {
				return doneMsg{err: fmt.Errorf("kill -s %s %d: %w", sig, gpid, err)}
			}
			return doneMsg{text: fmt.Sprintf("sent %s to gpid %d", sig, gpid)}
		}
	case tea.KeyEsc:
		m.mode = modeBrowse
	default:
		edit(&m.input, k)
	}
	return m, nil
}

func (m *Model) migrateKey(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch s := k.String(); {
	case s == "enter":
		gpid, node := m.target, m.choices[m.choice]
		m.mode = modeBrowse
		m.msg = fmt.Sprintf("migrating gpid %d to %s...", gpid, node)
		return m, func() tea.Msg {
			out, err := m.src.Migrate(m.ctx, gpid, node)
			return doneMsg{text: out, err: err}
		}
	case s == "esc" || s == "q":
		m.mode = modeBrowse
	case s == "left" || s == "shift+tab" || s == "up":
		m.choice = (m.choice + len(m.choices) - 1) % len(m.choices)
	case s == "right" || s == "tab" || s == "down":
		m.choice = (m.choice + 1) % len(m.choices)
	default:
		if i, err := strconv.Atoi(s); err == nil && i >= 1 && i <= len(m.choices) {
			m.choice = i - 1
		}
	}
	return m, nil
}
