package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

func newInitCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the station database and audit signing key (idempotent), then run station doctor",
		Long: `Creates the station's audit signing key and database where they are missing
(idempotent: an existing database of this station is kept), then runs the
checks of station doctor on what init cannot create (vendor roots, the line
intermediate and its key, the escrow key, the firmware, the fixtures' TPMs)
and prints them. The exit code is doctor's: 1 when a check failed (the
database and key are created all the same), 0 otherwise; warnings pass.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			created, err := station.Init(cfg, g.version)
			if err != nil {
				return err
			}
			key, err := station.LoadSigningKey(cfg)
			if err != nil {
				return err
			}
			pub, err := audit.MarshalPublicKeyPEM(key)
			if err != nil {
				return err
			}
			keyRef := certgen.RedactURI(cfg.Path(cfg.Station.SigningKey)) // never print a PIN
			// What init cannot create (vendor roots, the issuer, the
			// firmware...) is checked by station doctor, whose exit code
			// init takes: 1 when a check failed, warnings pass.
			checks := g.doctor()
			code := doctorCode(checks)
			if g.json() {
				doc := newDoctorDocument(checks)
				if err := cli.WriteJSON(c.OutOrStdout(), map[string]any{
					"station": cfg.Station.ID, "db": cfg.Station.DB, "signing_key": keyRef,
					"created": created, "public_key": string(pub), "checks": doc.Checks, "exit_code": code, "hint": doc.Hint,
				}); err != nil {
					return err
				}
			} else {
				state := "already initialized"
				if created {
					state = "initialized"
				}
				fmt.Fprintf(c.OutOrStdout(), "station %s %s\n  database:    %s\n  signing key: %s\n\nGive auditors the public key (station audit pubkey):\n%s\nstation doctor:\n",
					cfg.Station.ID, state, cfg.Station.DB, keyRef, pub)
				writeDoctorText(c.OutOrStdout(), checks)
			}
			if code != ExitOK {
				return silentError{code}
			}
			return nil
		},
	}
}
