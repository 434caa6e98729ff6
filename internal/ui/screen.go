package ui

import (
	"io"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// Screen is a live screen on a terminal. Its methods may be called from
// any goroutine (parallel fixtures); StepStarted, StepDone and Note make it
// a station.Observer.
type Screen struct {
	w     io.Writer
	p     *tea.Program
	model *Model
	done  chan struct{}
}

// Start draws a live screen on the terminal w until Close.
func Start(w io.Writer, o Options) *Screen {
	m := NewModel(o)
	s := &Screen{w: w, model: m, done: make(chan struct{})}
	// No input and no signal handling: the terminal stays as it is, so
	// Ctrl-C reaches the command as SIGINT, which it handles itself.
	s.p = tea.NewProgram(m, tea.WithOutput(w), tea.WithInput(nil), tea.WithoutSignalHandler())
	go func() {
		defer close(s.done)
		s.p.Run() // an error leaves the live part undrawn; Final still reports
	}()
	return s
}

// UnitStarted: serial went on fixture.
func (s *Screen) UnitStarted(serial, fixture string) {
	s.p.Send(UnitStarted{Serial: serial, Fixture: fixture})
}

// StepStarted implements station.Observer.
func (s *Screen) StepStarted(serial, step string) { s.p.Send(StepStarted{serial, step}) }

// StepDone implements station.Observer.
func (s *Screen) StepDone(serial, step string, d time.Duration, err error) {
	s.p.Send(StepDone{serial, step, d, err})
}

// Note implements station.Observer.
func (s *Screen) Note(serial, text string) { s.p.Send(Note{serial, text}) }

// UnitDone reports a unit's outcome.
func (s *Screen) UnitDone(o Outcome) { s.p.Send(UnitDone{o}) }

// Stopping says the run was interrupted.
func (s *Screen) Stopping() { s.p.Send(Stopping{}) }

// Close ends the live part and writes what stays: the unit's verdict or
// the batch's summary.
func (s *Screen) Close() {
	s.p.Send(closeMsg{})
	<-s.done
	lipgloss.Fprint(s.w, s.model.Final())
}
