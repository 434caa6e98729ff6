package cmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/internal/ui"
	"github.com/factory-id/station/station"
)

// unitScreen is how provision and verify show units as they run: the live
// screen on a terminal (internal/ui), else the plain lines, where --verbose
// logs each step to stderr.
type unitScreen struct {
	live *ui.Screen // nil: plain lines
	obs  station.Observer
	stop chan struct{}
}

// newUnitScreen starts the live screen when stdout is a terminal that
// allows it (not -o json, NO_COLOR or TERM=dumb).
func newUnitScreen(g *globals, c *cobra.Command, command string, o *unitFlags, reqs []station.Request, parallel int) *unitScreen {
	s := &unitScreen{stop: make(chan struct{})}
	out := c.OutOrStdout()
	if g.json() || !ui.Live(out, g.getenv) {
		s.obs = station.ObserverFuncs{
			Started: func(serial, step string) { g.log().Info("step", "serial", serial, "step", step) },
			Noted:   func(serial, text string) { g.log().Info(text, "serial", serial) },
		}
		return s
	}
	opts := ui.Options{Command: command, Batch: o.batch != "", Total: len(reqs)}
	for _, r := range reqs {
		opts.Order = append(opts.Order, r.Serial)
	}
	if o.batch != "" {
		opts.Resume = "station " + command + " --batch " + o.batch
		if parallel > 1 {
			opts.Resume += fmt.Sprintf(" --parallel %d", parallel)
		}
	}
	s.live = ui.Start(out, opts)
	s.obs = s.live
	go func() {
		select {
		case <-ctx(c).Done():
			s.live.Stopping()
		case <-s.stop:
		}
	}()
	return s
}

// started announces a unit going on its fixture.
func (s *unitScreen) started(serial, fixture string) {
	if s.live != nil {
		s.live.UnitStarted(serial, fixture)
	}
}

// done reports a unit's outcome on the live screen (plain output is the
// command's own lines).
func (s *unitScreen) done(o ui.Outcome) {
	if s.live != nil {
		s.live.UnitDone(o)
	}
}

// close ends the live screen, leaving the verdict or the batch summary.
func (s *unitScreen) close() {
	close(s.stop)
	if s.live != nil {
		s.live.Close()
	}
}

// fixture is where a unit's TPM is.
func fixture(r station.Request, def string) string {
	if r.TPMAddr != "" {
		return r.TPMAddr
	}
	return def
}

// notStarted is a unit a batch never reached because it was interrupted.
func notStarted(command, serial, batch string) ui.Outcome {
	return ui.Outcome{Serial: serial, Verdict: ui.NotStarted,
		Hint: fmt.Sprintf("not started: re-run `station %s --batch %s`", command, batch)}
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
