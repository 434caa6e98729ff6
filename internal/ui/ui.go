// Package ui is the operator's live screen for commands that work through
// units (provision, verify, and any session that feeds it units): each
// unit's steps as they run, with a spinner and the time spent, then a large
// PASS or FAIL with the one thing to do; for a batch, one row per fixture,
// a progress bar and a summary table in the batch's order.
//
// The screen is a bubbletea model fed by events (UnitStarted, StepStarted,
// StepDone, Note, UnitDone). It knows nothing of TPMs: a Screen's methods
// match station.Observer, so the same screen serves every command. It is
// only for terminals: Live says when to use it; piped output, NO_COLOR and
// TERM=dumb get the commands' plain lines instead.
package ui

import (
	"io"
	"os"

	"golang.org/x/term"
)

// Live reports whether w is a terminal that may get the live screen: a
// terminal, NO_COLOR unset or empty (no-color.org), TERM not "dumb".
func Live(w io.Writer, getenv func(string) string) bool {
	if getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return false
	}
	return IsTerminal(w)
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
