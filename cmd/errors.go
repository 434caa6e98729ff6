package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/agent"
	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/enroll/regid"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/station"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
	"github.com/factory-id/station/tsskey"
)

// Exit codes of the contract: internal/cli's, where each carries its README
// row, named here for cmd's callers and tests.
const (
	ExitOK          = cli.ExitOK
	ExitFailed      = cli.ExitFailed
	ExitUsage       = cli.ExitUsage
	ExitPolicy      = cli.ExitPolicy
	ExitIntegrity   = cli.ExitIntegrity
	ExitEnvironment = cli.ExitEnvironment
)

// usageArgs makes every positional-argument mistake in the tree under c a
// usage error (exit 2): each command's Args validator is wrapped (cobra's
// NoArgs, ExactArgs... return plain errors), a leaf without one takes no
// arguments, and a command with subcommands refuses an unknown one (cobra's
// own check, on the root only, returns a plain error before any hook runs,
// and a group that cannot run prints its help and exits 0).
//
// With -o json (json reports it), a group given no subcommand is a usage
// error too: its help is text, and stdout must hold JSON only.
func usageArgs(c *cobra.Command, json func() bool) {
	for _, sub := range c.Commands() {
		usageArgs(sub, json)
	}
	switch v := c.Args; {
	case c.HasSubCommands():
		c.Args = cli.UnknownCommand
		if !c.Runnable() {
			c.RunE = func(c *cobra.Command, _ []string) error {
				if json() {
					var names []string
					for _, sub := range c.Commands() {
						if sub.IsAvailableCommand() {
							names = append(names, sub.Name())
						}
					}
					return cli.Usagef("%s needs a command: one of %s", c.CommandPath(), strings.Join(names, ", "))
				}
				return c.Help()
			}
		}
	case v == nil:
		c.Args = cli.NoArgs
	default:
		c.Args = func(c *cobra.Command, args []string) error {
			err := v(c, args)
			if err != nil && !cli.IsUsage(err) {
				return cli.Usage(err)
			}
			return err
		}
	}
}

// silentError carries an exit code for a failure whose report was already
// written (a verify that printed its failed checks, a batch summary).
type silentError struct{ code int }

func (e silentError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// classes maps every sentinel error of station's packages to its exit code.
// The first entry an error wraps (errors.Is) decides, so a sentinel that
// wraps another comes before it. Before the table, a usage error or a
// *configs.Error is exit 2; an error matching no entry is exit 1.
// TestEverySentinelHasAClass requires each exported Err… variable of every
// package to be listed here, and no entry to be hidden by an earlier one.
var classes = []struct {
	target error
	code   int
}{
	// The database.
	{store.ErrBusy, ExitEnvironment},
	{store.ErrReplaced, ExitEnvironment}, // the database went away under a running command
	{store.ErrNotStationDB, ExitUsage},   // --db or station.db names the wrong file
	{store.ErrDamaged, ExitIntegrity},    // the station's database cannot be read whole
	{store.ErrNotFound, ExitUsage},       // an unknown serial is bad input

	// The audit log and its exports.
	{audit.ErrIntegrity, ExitIntegrity},
	{audit.ErrKey, ExitUsage},
	{audit.ErrStation, ExitUsage},
	{audit.ErrExportDir, ExitUsage},
	{audit.ErrNotExport, ExitUsage},
	{audit.ErrWitness, ExitEnvironment}, // the witness folder cannot be read or written

	// The CA side.
	{certgen.ErrHSM, ExitEnvironment},
	{certgen.ErrShortLived, ExitPolicy}, // wraps ErrPolicy
	{certgen.ErrPolicy, ExitPolicy},
	{certgen.ErrIssuer, ExitUsage},
	{certgen.ErrExists, ExitUsage},
	{certgen.ErrPassword, ExitUsage},
	{enroll.ErrGroupKey, ExitUsage},
	{certgen.ErrKeyURI, ExitUsage},

	// DPS enrollment exports and revocation.
	{enroll.ErrSignature, ExitIntegrity},
	{enroll.ErrTampered, ExitIntegrity},
	{enroll.ErrDuplicates, ExitPolicy},
	{enroll.ErrNoKey, ExitUsage},
	{enroll.ErrOptions, ExitUsage},
	{enroll.ErrOutput, ExitUsage},
	{enroll.ErrSecretsNeeded, ExitUsage},
	{enroll.ErrConcurrentExport, ExitEnvironment},
	{enroll.ErrNotCA, ExitUsage},

	// The station: setup, serials, provisioning refusals, revocation.
	{station.ErrNotInitialized, ExitUsage},
	{station.ErrBadSerial, ExitUsage},
	{station.ErrBadScan, ExitUsage},      // a line from station line's scanner
	{station.ErrDuplicateEK, ExitPolicy}, // these six wrap ErrRefused
	{station.ErrSerialOtherTPM, ExitPolicy},
	{station.ErrOwnedElsewhere, ExitPolicy},
	{station.ErrRevoked, ExitPolicy},
	{station.ErrDuplicateRegID, ExitPolicy},
	{station.ErrIssuerRevoked, ExitPolicy},
	{station.ErrRefused, ExitPolicy},
	{station.ErrRevokeTarget, ExitUsage},

	// station agent, which holds the line key for provision processes.
	{agent.ErrUnavailable, ExitEnvironment}, // not started, stopped or killed: start it and re-run
	{agent.ErrInUse, ExitEnvironment},
	{agent.ErrMismatch, ExitUsage}, // the agent's config is not provision's
	{agent.ErrUnsafeSocket, ExitUsage},
	{agent.ErrPeer, ExitPolicy},

	// The TPM.
	{tpmops.ErrEKMismatch, ExitPolicy},
	{tpmops.ErrUntrustedEKCert, ExitPolicy},
	{tpmops.ErrNoEKCert, ExitPolicy},
	{tpmops.ErrForeignKey, ExitPolicy},
	{tpmops.ErrBadAddress, ExitUsage},
	{tpmops.ErrUnreachable, ExitEnvironment},
	{tpmops.ErrLockout, ExitPolicy}, // set the unit aside: not retryable
	{tpmops.ErrTPMBusy, ExitEnvironment},

	// Flashing.
	{flash.ErrFirmwareMismatch, ExitPolicy},
	{flash.ErrOtherUnit, ExitPolicy},

	// Exit 1 on purpose: the operation failed, and nothing about the input,
	// the policy or the environment says more. These come last, so that
	// anything else such an error wraps decides.
	{audit.ErrSecret, ExitFailed},      // a payload that looks like a secret is the caller's bug
	{audit.ErrNoRecords, ExitFailed},   // a proof for a serial the log never saw
	{audit.ErrCheckpoint, ExitFailed},  // verification wraps it in ErrIntegrity (exit 4)
	{enroll.ErrIncomplete, ExitFailed}, // a unit record that cannot be exported
	{regid.ErrInvalid, ExitFailed},     // issuance wraps it in certgen.ErrPolicy (exit 3)
	{station.ErrWrongTPM, ExitFailed},  // wraps ErrVerifyFailed
	{station.ErrVerifyFailed, ExitFailed},
	{station.ErrEscrowKey, ExitFailed},   // a verify check; provisioning wraps it in *configs.Error (exit 2)
	{station.ErrBadEscrow, ExitFailed},   // a verify check
	{tpmops.ErrHandleEmpty, ExitFailed},  // callers turn it into their own refusal or check
	{tpmops.ErrBadAuth, ExitFailed},      // provisioning refuses the unit as station.ErrOwnedElsewhere (exit 3)
	{tpmops.ErrDPSChallenge, ExitFailed}, // the DPS attestation check of verify
	{tpmops.ErrDPSActivation, ExitFailed},
	{flash.ErrReadback, ExitFailed}, // the flash step, or its verify check
	{flash.ErrTool, ExitFailed},
	{flash.ErrUnsafeInput, ExitFailed},
	{credbundle.ErrBundle, ExitFailed},
	{credbundle.ErrSignature, ExitFailed},
	{flash.ErrNVTooLarge, ExitFailed},
	{flash.ErrNoReadback, ExitFailed},
	{tsskey.ErrKeyFile, ExitFailed}, // a device key file that is not the one station writes: the flash step fails
}

// Exit prints err once to w, with its hint (hint.Of: the most specific
// cause's, unless an outer layer overrides it), and returns the exit code.
func Exit(err error, w io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var s silentError
	if errors.As(err, &s) {
		return s.code
	}
	fmt.Fprintf(w, "station: %v\n", err)
	if h := hint.Of(err); h != "" {
		fmt.Fprintf(w, "hint: %s\n", h)
	}
	return code(err)
}

func code(err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.As(err, new(*configs.Error)) || cli.IsUsage(err) {
		return ExitUsage
	}
	for _, c := range classes {
		if errors.Is(err, c.target) {
			return c.code
		}
	}
	return ExitFailed
}
