package cmd

import (
	"errors"
	"fmt"
	"io"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/store"
)

// Exit codes of the contract.
const (
	ExitOK          = 0
	ExitFailed      = 1 // a provisioning step or a verify check failed
	ExitUsage       = 2 // bad flag, invalid or unreadable config or input file
	ExitPolicy      = 3 // refused by policy
	ExitIntegrity   = 4 // audit chain, checkpoint or export signature does not verify
	ExitEnvironment = 5 // TPM, HSM or database unreachable, busy or locked
)

// usageError marks a command-line mistake (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// silentError carries an exit code for a failure whose report was already
// written (a verify that printed its failed checks, a batch summary).
type silentError struct{ code int }

func (e silentError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// classes maps sentinel errors of the libraries to exit codes. A library
// wraps its sentinel with %w; the first match (in order) wins.
var classes = []struct {
	target error
	code   int
}{
	{store.ErrBusy, ExitEnvironment},
	{store.ErrReplaced, ExitEnvironment}, // the database went away under a running command
	{store.ErrNotStationDB, ExitUsage},   // --db or station.db names the wrong file
	{store.ErrDamaged, ExitIntegrity},    // the station's database cannot be read whole
	{store.ErrNotFound, ExitUsage},       // an unknown serial is bad input
}

// addClass registers a library sentinel; called from init in the files that
// use the library, so this file need not import every package.
func addClass(target error, code int) {
	classes = append(classes, struct {
		target error
		code   int
	}{target, code})
}

// hinter is an error that knows what the operator should do next.
type hinter interface{ Hint() string }

// Exit prints err once to w (with its hint) and returns the exit code.
func Exit(err error, w io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var s silentError
	if errors.As(err, &s) {
		return s.code
	}
	fmt.Fprintf(w, "station: %v\n", err)
	var h hinter
	if errors.As(err, &h) && h.Hint() != "" {
		fmt.Fprintf(w, "hint: %s\n", h.Hint())
	}
	return code(err)
}

func code(err error) int {
	if err == nil {
		return ExitOK
	}
	var ce *configs.Error
	var ue usageError
	switch {
	case errors.As(err, &ce), errors.As(err, &ue):
		return ExitUsage
	}
	for _, c := range classes {
		if errors.Is(err, c.target) {
			return c.code
		}
	}
	return ExitFailed
}
