package ui

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/progress"
	"charm.land/bubbles/v2/spinner"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"charm.land/lipgloss/v2/table"
)

// The events the screen is fed (tea messages, from Screen's methods).
type (
	// UnitStarted: a unit went on a fixture.
	UnitStarted struct{ Serial, Fixture string }
	// StepStarted: a unit's step (or check) began.
	StepStarted struct{ Serial, Step string }
	// StepDone: a unit's step ended after Elapsed; Err is why it failed.
	StepDone struct {
		Serial, Step string
		Elapsed      time.Duration
		Err          error
	}
	// Note: something a unit's run did besides its steps.
	Note struct{ Serial, Text string }
	// UnitDone: a unit's outcome.
	UnitDone struct{ Outcome }
	// Stopping: the run was interrupted; units in flight finish their step.
	Stopping struct{}
)

type (
	tick     struct{}
	closeMsg struct{} // Screen.Close: end once every outcome line is printed
	printed  struct{} // an outcome line reached the terminal
)

// Verdict is how a unit ended.
type Verdict int

// Verdicts.
const (
	Pass        Verdict = iota
	Fail                // a step failed or the unit was refused
	Interrupted         // Ctrl-C or SIGTERM stopped it between steps; it resumes
	NotStarted          // the batch was interrupted before the unit's turn
)

func (v Verdict) String() string {
	return [...]string{"PASS", "FAIL", "INTERRUPTED", "NOT STARTED"}[v]
}

// Outcome is how one unit ended, as the screen reports it.
type Outcome struct {
	Serial  string
	Verdict Verdict
	Detail  string // pass: what was done (registration ID, resumed); otherwise the error
	Step    string // the step that failed or was interrupted
	Hint    string // the one thing to do
	Elapsed time.Duration
}

// Options shape a screen.
type Options struct {
	Command string   // "provision", "verify": the title of each unit
	Batch   bool     // rows per fixture, a progress bar and a summary; else one unit in detail
	Total   int      // units expected (0: unknown, no progress bar)
	Order   []string // the batch's serials in its order, for the summary
	// Resume is the command that finishes an interrupted batch
	// ("station provision --batch tray.csv").
	Resume string
	// Session is a shift-long session (station line): units arrive one by
	// one with no total, each fixture's row shows its unit's steps, and the
	// last unit's large PASS or FAIL with the one thing to do stays on the
	// screen until the next one ends. It implies Batch.
	Session bool
	// ResumeUnit says how to resume one interrupted unit (default: "re-run
	// `station COMMAND --serial SN`").
	ResumeUnit string
}

// unitState is what the screen knows of one unit.
type unitState struct {
	serial, fixture string
	start           time.Time
	steps           []stepState
	notes           []string
	out             *Outcome
}

type stepState struct {
	name  string
	start time.Time
	d     time.Duration
	err   error
	done  bool
}

// Model is the screen's state: a bubbletea model fed by the events above.
type Model struct {
	o        Options
	st       styles
	bar      progress.Model
	start    time.Time
	units    map[string]*unitState
	running  []string // serials in the order they started
	outs     []Outcome
	last     *Outcome // the session's last finished unit
	stopping bool
	closing  bool
	quitting bool
	printing int // outcome lines on their way to the terminal
	frame    int
}

// NewModel returns an empty screen.
func NewModel(o Options) *Model {
	if o.Session {
		o.Batch = true
	}
	return &Model{
		o: o, st: newStyles(), start: time.Now(), units: map[string]*unitState{},
		bar: progress.New(progress.WithColors(lipgloss.Green), progress.WithoutPercentage(), progress.WithWidth(30)),
	}
}

var spin = spinner.Dot

func tickCmd() tea.Cmd { return tea.Tick(spin.FPS, func(time.Time) tea.Msg { return tick{} }) }

// Init starts the clock that turns the spinners and the elapsed times.
func (m *Model) Init() tea.Cmd { return tickCmd() }

// Update applies one event.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch e := msg.(type) {
	case tick:
		m.frame++
		return m, tickCmd()
	case closeMsg:
		m.closing = true
		return m, m.quitWhenPrinted()
	case printed:
		m.printing--
		return m, m.quitWhenPrinted()
	case UnitStarted:
		u := m.units[e.Serial]
		if u != nil && u.out != nil {
			m.forget(e.Serial) // scanned again after it ended: a new attempt
			u = nil
		}
		if u != nil && e.Fixture == "" {
			break // scanned again while it runs: it stays as it is
		}
		if u == nil {
			u = m.unit(e.Serial)
		} else if u.fixture == "" {
			u.start = time.Now() // it waited for a fixture until now
		}
		u.fixture = e.Fixture
	case StepStarted:
		u := m.unit(e.Serial)
		u.steps = append(u.steps, stepState{name: e.Step, start: time.Now()})
	case StepDone:
		u := m.unit(e.Serial)
		for i := len(u.steps) - 1; i >= 0; i-- {
			if s := &u.steps[i]; s.name == e.Step && !s.done {
				s.d, s.err, s.done = e.Elapsed, e.Err, true
				break
			}
		}
	case Note:
		u := m.unit(e.Serial)
		u.notes = append(u.notes, e.Text)
	case Stopping:
		m.stopping = true
	case UnitDone:
		u := m.unit(e.Serial)
		out := e.Outcome
		u.out = &out
		m.outs = append(m.outs, out)
		m.last = &out
		if m.o.Batch {
			m.printing++
			return m, tea.Sequence(tea.Println(m.st.outcomeLine(out)), func() tea.Msg { return printed{} })
		}
	}
	return m, nil
}

// quitWhenPrinted ends the program once it is closing and every outcome
// line has been printed (the live area is then cleared for Final).
func (m *Model) quitWhenPrinted() tea.Cmd {
	if !m.closing || m.printing > 0 {
		return nil
	}
	m.quitting = true
	return tea.Quit
}

// forget drops a finished unit's state (its outcome stays in outs).
func (m *Model) forget(serial string) {
	delete(m.units, serial)
	for i, s := range m.running {
		if s == serial {
			m.running = append(m.running[:i], m.running[i+1:]...)
			break
		}
	}
}

func (m *Model) unit(serial string) *unitState {
	u := m.units[serial]
	if u == nil {
		u = &unitState{serial: serial, start: time.Now()}
		m.units[serial] = u
		m.running = append(m.running, serial)
	}
	return u
}

// View is the live part of the screen (empty once the screen is closing:
// Final replaces it).
func (m *Model) View() tea.View { return tea.NewView(m.Live()) }

// Live is the live part of the screen as text.
func (m *Model) Live() string {
	if m.quitting {
		return ""
	}
	var b strings.Builder
	if m.o.Batch {
		b.WriteString(m.progressLine() + "\n")
		for _, s := range m.running {
			if u := m.units[s]; u.out == nil {
				b.WriteString(m.row(u) + "\n")
			}
		}
		if m.o.Session && m.last != nil {
			b.WriteString(m.st.verdict(*m.last))
		}
	} else {
		for _, s := range m.running {
			b.WriteString(m.steps(m.units[s]))
		}
	}
	if m.stopping {
		b.WriteString(m.st.warn.Render("stopping: units in flight finish their current step, then are journaled") + "\n")
	}
	return b.String()
}

// progressLine is the bar with done, failed and the time left.
func (m *Model) progressLine() string {
	done, failed, stopped := 0, 0, 0
	for _, o := range m.outs {
		done++
		switch o.Verdict {
		case Fail:
			failed++
		case Interrupted, NotStarted:
			stopped++
		}
	}
	counts := m.st.failCount(failed)
	if stopped > 0 {
		counts += " · " + m.st.warn.Render(fmt.Sprintf("%d interrupted", stopped))
	}
	eta := "—"
	if done > 0 && m.o.Total > done {
		left := time.Duration(float64(time.Since(m.start)) / float64(done) * float64(m.o.Total-done))
		eta = clock(left)
	} else if m.o.Total > 0 && done >= m.o.Total {
		eta = "0:00"
	}
	if m.o.Total <= 0 { // a session: no total, a running count
		elapsed := time.Since(m.start)
		return fmt.Sprintf("%d done · %s · %.0f units/hour · %s", done, counts, float64(done-failed-stopped)/elapsed.Hours(), clock(elapsed))
	}
	return fmt.Sprintf("%s %d/%d done · %s · ETA %s", m.bar.ViewAs(float64(done)/float64(m.o.Total)),
		done, m.o.Total, counts, eta)
}

// row is a unit in flight on its fixture: spinner, serial, step, time.
func (m *Model) row(u *unitState) string {
	step := "starting"
	var since time.Time = u.start
	if n := len(u.steps); n > 0 && !u.steps[n-1].done {
		step, since = u.steps[n-1].name, u.steps[n-1].start
	}
	where := u.fixture
	if m.o.Session && u.fixture == "" {
		step, where = "waiting", "for a free fixture"
	}
	row := fmt.Sprintf("%s %-16s %-12s %6s  %s", m.st.spin.Render(spin.Frames[m.frame%len(spin.Frames)]),
		u.serial, step, seconds(time.Since(since)), m.st.dim.Render(where))
	if m.o.Session { // the steps done so far, and the unit's time
		var done []string
		for _, s := range u.steps {
			if s.done && s.err == nil {
				done = append(done, "✓ "+s.name)
			}
		}
		if len(done) > 0 {
			row += "  " + m.st.pass.Render(strings.Join(done, " "))
		}
		if u.fixture != "" {
			row += m.st.dim.Render(" · unit " + seconds(time.Since(u.start)))
		}
	}
	return row
}

// steps is one unit in detail: a line per step so far.
func (m *Model) steps(u *unitState) string {
	var b strings.Builder
	title := m.o.Command + " " + u.serial
	if u.fixture != "" {
		title += m.st.dim.Render(" · " + u.fixture)
	}
	b.WriteString(m.st.title.Render(title) + "\n")
	for _, n := range u.notes {
		b.WriteString("  " + m.st.dim.Render("note: "+n) + "\n")
	}
	for _, s := range u.steps {
		mark, d, detail := m.st.spin.Render(spin.Frames[m.frame%len(spin.Frames)]), time.Since(s.start), ""
		switch {
		case s.done && s.err == nil:
			mark, d = m.st.pass.Render("✓ "), s.d
		case s.done:
			mark, d, detail = m.st.fail.Render("✗ "), s.d, "  "+m.st.dim.Render(firstLine(s.err.Error()))
		}
		fmt.Fprintf(&b, "  %s%-16s %6s%s\n", mark, s.name, seconds(d), detail)
	}
	return b.String()
}

// Final is what stays on the terminal once the run is over: the unit's
// steps and its large verdict, or the batch's summary.
func (m *Model) Final() string {
	if m.o.Batch {
		return m.summary()
	}
	var b strings.Builder
	for _, s := range m.running {
		u := m.units[s]
		b.WriteString(m.steps(u))
		if u.out != nil {
			b.WriteString(m.st.verdict(*u.out))
		}
	}
	if m.stopping {
		b.WriteString(m.st.warn.Render("interrupted") + "\n")
	}
	return b.String()
}

// summary is the batch's table in the batch's order, then the tally.
func (m *Model) summary() string {
	byserial := map[string]Outcome{}
	for _, o := range m.outs {
		byserial[o.Serial] = o
	}
	var order []string
	seen := map[string]bool{}
	for _, s := range append(append([]string{}, m.o.Order...), m.running...) {
		if _, ok := byserial[s]; ok && !seen[s] {
			order, seen[s] = append(order, s), true
		}
	}
	n := map[Verdict]int{}
	var interrupted []string
	t := table.New().Border(lipgloss.NormalBorder()).BorderStyle(m.st.dim).
		Headers("serial", "result", "step", "time", "what to do")
	var rows []Outcome
	for _, s := range order {
		o := byserial[s]
		rows = append(rows, o)
		n[o.Verdict]++
		if o.Verdict == Interrupted {
			interrupted = append(interrupted, s)
		}
		tm := ""
		if o.Verdict != NotStarted {
			tm = seconds(o.Elapsed)
		}
		what := o.Hint
		if o.Verdict == Pass {
			what = o.Detail
		}
		t.Row(o.Serial, o.Verdict.String(), o.Step, tm, what)
	}
	t.StyleFunc(func(row, col int) lipgloss.Style {
		s := lipgloss.NewStyle().Padding(0, 1)
		if row == table.HeaderRow {
			return s.Bold(true)
		}
		if col == 1 && row >= 0 && row < len(rows) {
			return s.Inherit(m.st.verdictStyle(rows[row].Verdict))
		}
		return s
	})
	t.Wrap(true)
	var b strings.Builder
	b.WriteString(t.Render() + "\n")
	elapsed := time.Since(m.start)
	perHour := float64(n[Pass]) / elapsed.Hours()
	tally := fmt.Sprintf("%d passed, %d failed", n[Pass], n[Fail])
	if n[Interrupted]+n[NotStarted] > 0 {
		tally += fmt.Sprintf(", %d interrupted, %d not started", n[Interrupted], n[NotStarted])
	}
	fmt.Fprintf(&b, "%s · %.0f units/hour · %s\n", tally, perHour, clock(elapsed))
	if n[Interrupted]+n[NotStarted] > 0 {
		msg := "interrupted:"
		if len(interrupted) > 0 {
			how := m.o.ResumeUnit
			if how == "" {
				how = fmt.Sprintf("resume one with `station %s --serial SN`", m.o.Command)
			}
			msg += fmt.Sprintf(" %s journaled where they stopped (%s);", strings.Join(interrupted, ", "), how)
		}
		if m.o.Resume != "" {
			msg += fmt.Sprintf(" re-run `%s` to finish the batch (finished units are left as they are)", m.o.Resume)
		}
		b.WriteString(m.st.warn.Render(msg) + "\n")
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func clock(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// styles are the screen's colours (basic ANSI colours: every colour
// terminal has them).
type styles struct {
	title, dim, pass, fail, warn, spin lipgloss.Style
}

func newStyles() styles {
	return styles{
		title: lipgloss.NewStyle().Bold(true),
		dim:   lipgloss.NewStyle().Faint(true),
		pass:  lipgloss.NewStyle().Foreground(lipgloss.Green).Bold(true),
		fail:  lipgloss.NewStyle().Foreground(lipgloss.Red).Bold(true),
		warn:  lipgloss.NewStyle().Foreground(lipgloss.Yellow).Bold(true),
		spin:  lipgloss.NewStyle().Foreground(lipgloss.Cyan),
	}
}

func (st styles) verdictStyle(v Verdict) lipgloss.Style {
	switch v {
	case Pass:
		return st.pass
	case Fail:
		return st.fail
	}
	return st.warn
}

func (st styles) failCount(n int) string {
	s := fmt.Sprintf("%d failed", n)
	if n > 0 {
		return st.fail.Render(s)
	}
	return s
}

// outcomeLine is a finished unit of a batch, kept above the live rows.
func (st styles) outcomeLine(o Outcome) string {
	tm := seconds(o.Elapsed)
	if o.Verdict == NotStarted {
		tm = ""
	}
	line := fmt.Sprintf("%s  %-16s %6s", st.verdictStyle(o.Verdict).Render(fmt.Sprintf("%-11s", o.Verdict)), o.Serial, tm)
	switch {
	case o.Verdict == Pass:
		line += "  " + st.dim.Render(o.Detail)
	case o.Step != "":
		line += "  at " + o.Step + ": " + o.Hint
	default:
		line += "  " + o.Hint
	}
	return line
}

// verdict is a unit's large PASS or FAIL (INTERRUPTED in plain letters),
// then what happened and the one thing to do.
func (st styles) verdict(o Outcome) string {
	var b strings.Builder
	s := st.verdictStyle(o.Verdict)
	b.WriteString("\n")
	switch o.Verdict {
	case Pass, Fail:
		b.WriteString(s.Render(bigText(o.Verdict.String())) + "\n")
	default:
		b.WriteString(s.Render(o.Verdict.String()) + "\n")
	}
	head := o.Verdict.String() + "  " + o.Serial
	if o.Step != "" && o.Verdict != Pass {
		head += "  at step " + o.Step
	}
	b.WriteString(s.Render(head) + "  " + seconds(o.Elapsed) + "\n")
	if o.Detail != "" {
		b.WriteString(o.Detail + "\n")
	}
	if o.Hint != "" {
		b.WriteString(st.title.Render("→ "+o.Hint) + "\n")
	}
	return b.String()
}

// bigText draws PASS or FAIL in block letters, to be read from across the
// line.
func bigText(word string) string {
	rows := make([]string, 5)
	for _, c := range word {
		g := glyphs[c]
		for i := range rows {
			rows[i] += g[i] + " "
		}
	}
	return strings.Join(rows, "\n")
}

var glyphs = map[rune][5]string{
	'P': {"████ ", "█   █", "████ ", "█    ", "█    "},
	'A': {" ███ ", "█   █", "█████", "█   █", "█   █"},
	'S': {" ████", "█    ", " ███ ", "    █", "████ "},
	'F': {"█████", "█    ", "████ ", "█    ", "█    "},
	'I': {"█████", "  █  ", "  █  ", "  █  ", "█████"},
	'L': {"█    ", "█    ", "█    ", "█    ", "█████"},
}
