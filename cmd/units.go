package cmd

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/store"
)

func newUnitsCommand(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "units", Short: "What the station knows of its units", Args: cli.NoArgs}
	c.AddCommand(newUnitsListCommand(g), newUnitsShowCommand(g))
	return c
}

// unitSummary is one row of `station units list`.
type unitSummary struct {
	Serial         string    `json:"serial"`
	Status         string    `json:"status"`
	RegistrationID string    `json:"registration_id"`
	Attestation    string    `json:"attestation"`
	FailedStep     string    `json:"failed_step,omitempty"`
	ProvisionedAt  time.Time `json:"provisioned_at,omitzero"`
}

func summarize(u *store.Unit) unitSummary {
	s := unitSummary{Serial: u.Serial, Status: u.Status, RegistrationID: u.RegistrationID, Attestation: u.Attestation, ProvisionedAt: u.ProvisionedAt}
	for _, st := range u.Steps {
		if st.State == store.StepFailed {
			s.FailedStep = st.Name
		}
	}
	return s
}

type unitsListOptions struct {
	status string
}

func newUnitsListCommand(g *globals) *cobra.Command {
	o := &unitsListOptions{}
	c := &cobra.Command{
		Use:   "list",
		Short: "List the units (serial, status, registration ID)",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			keep, ok := unitFilters[o.status]
			if !ok {
				return cli.Usagef("--status %q: want one of %s", o.status, strings.Join(unitStatuses, ", "))
			}
			db, err := g.openDB()
			if err != nil {
				return err
			}
			defer db.Close()
			units, err := db.Units(keep)
			if err != nil {
				return err
			}
			var rows []unitSummary
			for _, u := range units {
				rows = append(rows, summarize(u))
			}
			if g.json() {
				if rows == nil {
					rows = []unitSummary{}
				}
				return cli.WriteJSON(c.OutOrStdout(), rows)
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SERIAL\tSTATUS\tREGISTRATION ID\tPROVISIONED")
			for _, r := range rows {
				when := "-"
				if !r.ProvisionedAt.IsZero() {
					when = r.ProvisionedAt.Format(time.RFC3339)
				}
				status := r.Status
				if r.FailedStep != "" && r.Status == store.StatusInProgress {
					status += " (failed at " + r.FailedStep + ")"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Serial, status, r.RegistrationID, when)
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&o.status, "status", "", "only units in this state: "+strings.Join(unitStatuses, ", "))
	return c
}

// lastStepFailed reports whether the unit's journal holds a failed step
// (a step's state is reset when a later attempt starts it again).
func lastStepFailed(u *store.Unit) bool {
	for _, st := range u.Steps {
		if st.State == store.StepFailed {
			return true
		}
	}
	return false
}

// unitFilters are the --status values of units list: failed and
// resumable split the units in progress (a step failed on the last
// attempt / interrupted by a crash, a kill or Ctrl-C); both resume with
// station provision --serial SN. in-progress is both.
var unitFilters = map[string]func(*store.Unit) bool{
	"":            func(*store.Unit) bool { return true },
	"failed":      func(u *store.Unit) bool { return u.Status == store.StatusInProgress && lastStepFailed(u) },
	"resumable":   func(u *store.Unit) bool { return u.Status == store.StatusInProgress && !lastStepFailed(u) },
	"in-progress": func(u *store.Unit) bool { return u.Status == store.StatusInProgress },
	"provisioned": func(u *store.Unit) bool { return u.Status == store.StatusProvisioned },
	"revoked":     func(u *store.Unit) bool { return u.Status == store.StatusRevoked },
}

var unitStatuses = []string{"failed", "provisioned", "resumable", "revoked", "in-progress"}

func newUnitsShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show SERIAL",
		Short: "Show everything recorded for one unit",
		Args:  cli.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			db, err := g.openDB()
			if err != nil {
				return err
			}
			defer db.Close()
			u, err := db.Unit(args[0])
			if err != nil {
				return err
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), unitDocument{Unit: u, SRKHandle: handleJSON(u.SRKHandle), DeviceKeyHandle: handleJSON(u.DeviceKeyHandle)})
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "serial\t%s\nstatus\t%s\nstation\t%s\nregistration id\t%s\nattestation\t%s\nEK (%s) sha256\t%s\nSRK\t0x%08x\ndevice key\t0x%08x\ncertificate serial\t%s\ncertificate sha256\t%s\nnot after\t%s\nowner auth\t%s\n",
				u.Serial, u.Status, u.StationID, u.RegistrationID, u.Attestation, u.EKType, u.EKSHA256,
				u.SRKHandle, u.DeviceKeyHandle, u.CertSerial, u.CertSHA256, u.NotAfter.Format(time.RFC3339), u.OwnerAuthPolicy)
			for _, e := range u.Escrows {
				state := "applied"
				if e.Pending {
					state = "pending"
				}
				fmt.Fprintf(w, "escrow %s\t%s (%d-byte JWE)\n", e.Hierarchy, state, len(e.JWE))
			}
			for _, s := range u.Steps {
				detail := ""
				if s.Error != "" {
					detail = ": " + s.Error
				}
				fmt.Fprintf(w, "step %s\t%s in %.1f ms (attempts %d)%s\n", s.Name, s.State, s.Millis, s.Attempts, detail)
			}
			if u.Revocation != nil {
				fmt.Fprintf(w, "revoked\t%s: %s\n", u.Revocation.At.Format(time.RFC3339), u.Revocation.Reason)
			}
			return w.Flush()
		},
	}
}

// unitDocument is `station units show -o json`: the unit's record, with its
// TPM handles written as "0x81000001" (the record stores them as numbers).
type unitDocument struct {
	*store.Unit
	SRKHandle       handleJSON `json:"srk_handle,omitempty"`
	DeviceKeyHandle handleJSON `json:"device_key_handle,omitempty"`
}
