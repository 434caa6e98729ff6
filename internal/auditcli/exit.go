package auditcli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/enroll/regid"
	"github.com/factory-id/station/store"
)

// Exit codes: station's (cmd/errors.go and the README's table), for the
// outcomes station-audit can have.
const (
	exitFailed      = 1
	exitUsage       = 2
	exitPolicy      = 3
	exitIntegrity   = 4
	exitEnvironment = 5
)

// Classes maps every sentinel of the packages station-audit links to
// station's exit code for it, in the order of station's table (the first
// entry an error wraps decides). It is the part of cmd/errors.go's table
// that the cgo-free packages own; cmd's TestStationAuditExitCodes requires
// each entry to give station's code and every such sentinel to be listed,
// so the two cannot drift.
var Classes = []struct {
	Target error
	Code   int
}{
	{store.ErrBusy, exitEnvironment},
	{store.ErrReplaced, exitEnvironment},
	{store.ErrNotStationDB, exitUsage},
	{store.ErrDamaged, exitIntegrity},
	{store.ErrNotFound, exitUsage},
	{audit.ErrIntegrity, exitIntegrity},
	{audit.ErrKey, exitUsage},
	{audit.ErrStation, exitUsage},
	{audit.ErrExportDir, exitUsage},
	{audit.ErrNotExport, exitUsage},
	{audit.ErrWitness, exitEnvironment},
	{enroll.ErrGroupKey, exitUsage},
	{enroll.ErrSignature, exitIntegrity},
	{enroll.ErrTampered, exitIntegrity},
	{enroll.ErrDuplicates, exitPolicy},
	{enroll.ErrNoKey, exitUsage},
	{enroll.ErrOptions, exitUsage},
	{enroll.ErrOutput, exitUsage},
	{enroll.ErrSecretsNeeded, exitUsage},
	{enroll.ErrConcurrentExport, exitEnvironment},
	{enroll.ErrNotCA, exitUsage},
	{audit.ErrSecret, exitFailed},
	{audit.ErrNoRecords, exitFailed},
	{audit.ErrCheckpoint, exitFailed},
	{enroll.ErrIncomplete, exitFailed},
	{regid.ErrInvalid, exitFailed},
}

// Code is the exit code for err: 2 for a command-line mistake, else the
// first class err wraps, else 1.
func Code(err error) int {
	if err == nil {
		return 0
	}
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	for _, c := range Classes {
		if errors.Is(err, c.Target) {
			return c.Code
		}
	}
	return exitFailed
}

// usageError marks a command-line mistake (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("unknown command %q for %q", args[0], c.CommandPath())
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s takes %d argument(s), got %d", c.CommandPath(), n, len(args))
		}
		return nil
	}
}
