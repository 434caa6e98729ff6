package cmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

func newDoctorCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the station's own setup: config, vendor roots, issuer, escrow key, firmware, database, audit log, fixtures' TPMs, disk",
		Long: `Runs named checks of the station's own setup, each pass, warn or fail with
what it found and, unless it passed, what to do:

  config        the config loads and is valid (dps.id_scope set)
  vendor-roots  tpm.vendor_roots holds parseable TPM vendor CA certificates (count, first expiry)
  issuer-chain  the line intermediate verifies up to the pinned root; days until the chain's first expiry
  issuer-key    the issuer key opens (HSM, or encrypted PEM with STATION_PKI_KEY_PASSWORD;
                without it: warn "not checked: no password", never a prompt) and is the certificate's
  warehouse     the chain outlives the warehouse period (pki.warehouse) and a leaf's field life
  escrow-key    ownership.escrow_public_key seals a test value
  firmware      firmware.image has the published firmware.sha256
  database      station.db opens, is this station's and is not held by another process
  signing-key   station.signing_key is the key the audit log is signed with
  audit-log     the audit log verifies up to its last checkpoint
  tpm           each fixture's TPM (tpm.address) answers, and what it holds: fresh,
                provisioned as SN, or owned by someone else (read only, as station tpm inspect)
  disk          free space where the database and exports go (warn under 1 GiB or 5%)

It changes nothing. Exit 1 if any check failed, 0 otherwise (warnings do not
fail). -o json: {"checks":[{"name","status","detail","hint"}],"exit_code":N}
(hint "" when the check passed).`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			checks := g.doctor()
			code := doctorCode(checks)
			if g.json() {
				if err := cli.WriteJSON(c.OutOrStdout(), newDoctorDocument(checks)); err != nil {
					return err
				}
			} else {
				writeDoctorText(c.OutOrStdout(), checks)
			}
			if code != ExitOK {
				return silentError{code}
			}
			return nil
		},
	}
}

// doctorDocument is `station doctor -o json`: the checks, each with its
// exit code (1 when it failed), then the command's exit code and the first
// failed check's hint.
type doctorDocument struct {
	Checks []doctorCheckJSON `json:"checks"`
	outcome
}

// doctorCheckJSON is one check of doctorDocument.
type doctorCheckJSON struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Detail   string `json:"detail"`
	Hint     string `json:"hint"`
	ExitCode int    `json:"exit_code"`
}

func newDoctorDocument(checks []station.DoctorCheck) doctorDocument {
	d := doctorDocument{Checks: []doctorCheckJSON{}, outcome: outcome{ExitCode: doctorCode(checks)}}
	for _, c := range checks {
		j := doctorCheckJSON{Name: c.Name, Status: c.Status, Detail: c.Detail, Hint: c.Hint}
		if c.Status == station.CheckFail {
			j.ExitCode = ExitFailed
			if d.Hint == "" {
				d.Hint = c.Hint
			}
		}
		d.Checks = append(d.Checks, j)
	}
	return d
}

// doctor runs station doctor's checks with the command's config and
// environment (a config that does not load is the failed config check).
func (g *globals) doctor() []station.DoctorCheck {
	cfg, err := g.config()
	file, _ := g.configSource()
	if _, serr := os.Stat(file); serr != nil {
		file = ""
	}
	return station.Doctor(cfg, err, station.DoctorOptions{ConfigFile: file, Getenv: g.getenv})
}

// doctorCode is the exit code of a set of checks: 1 when any failed.
func doctorCode(checks []station.DoctorCheck) int {
	for _, c := range checks {
		if c.Status == station.CheckFail {
			return ExitFailed
		}
	}
	return ExitOK
}

func writeDoctorText(w io.Writer, checks []station.DoctorCheck) {
	n := map[string]int{}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range checks {
		n[c.Status]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(c.Status), c.Name, c.Detail)
		if c.Hint != "" {
			fmt.Fprintf(tw, "\t\thint: %s\n", c.Hint)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d checks: %d passed, %d warnings, %d failed\n", len(checks), n[station.CheckPass], n[station.CheckWarn], n[station.CheckFail])
}
