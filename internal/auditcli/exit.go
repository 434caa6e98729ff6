package auditcli

import (
	"errors"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/enroll/regid"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/store"
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
	{store.ErrBusy, cli.ExitEnvironment},
	{store.ErrReplaced, cli.ExitEnvironment},
	{store.ErrNotStationDB, cli.ExitUsage},
	{store.ErrDamaged, cli.ExitIntegrity},
	{store.ErrNotFound, cli.ExitUsage},
	{audit.ErrIntegrity, cli.ExitIntegrity},
	{audit.ErrKey, cli.ExitUsage},
	{audit.ErrStation, cli.ExitUsage},
	{audit.ErrExportDir, cli.ExitUsage},
	{audit.ErrNotExport, cli.ExitUsage},
	{audit.ErrWitness, cli.ExitEnvironment},
	{enroll.ErrGroupKey, cli.ExitUsage},
	{enroll.ErrSignature, cli.ExitIntegrity},
	{enroll.ErrTampered, cli.ExitIntegrity},
	{enroll.ErrDuplicates, cli.ExitPolicy},
	{enroll.ErrNoKey, cli.ExitUsage},
	{enroll.ErrOptions, cli.ExitUsage},
	{enroll.ErrOutput, cli.ExitUsage},
	{enroll.ErrSecretsNeeded, cli.ExitUsage},
	{enroll.ErrConcurrentExport, cli.ExitEnvironment},
	{enroll.ErrNotCA, cli.ExitUsage},
	{audit.ErrSecret, cli.ExitFailed},
	{audit.ErrNoRecords, cli.ExitFailed},
	{audit.ErrCheckpoint, cli.ExitFailed},
	{enroll.ErrIncomplete, cli.ExitFailed},
	{regid.ErrInvalid, cli.ExitFailed},
}

// Code is the exit code for err: 2 for a command-line mistake, else the
// first class err wraps, else 1.
func Code(err error) int {
	if err == nil {
		return cli.ExitOK
	}
	if cli.IsUsage(err) {
		return cli.ExitUsage
	}
	for _, c := range Classes {
		if errors.Is(err, c.Target) {
			return c.Code
		}
	}
	return cli.ExitFailed
}
