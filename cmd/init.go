package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/station"
)

func newInitCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the station database and audit signing key (idempotent)",
		Args:  noArgs,
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
			if g.json() {
				return writeJSON(c.OutOrStdout(), map[string]any{
					"station": cfg.Station.ID, "db": cfg.Station.DB, "signing_key": keyRef,
					"created": created, "public_key": string(pub),
				})
			}
			state := "already initialized"
			if created {
				state = "initialized"
			}
			fmt.Fprintf(c.OutOrStdout(), "station %s %s\n  database:    %s\n  signing key: %s\n\nGive auditors the public key (station audit pubkey):\n%s",
				cfg.Station.ID, state, cfg.Station.DB, keyRef, pub)
			return nil
		},
	}
}

// noArgs refuses positional arguments with a usage error (exit 2).
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments (got %q)", c.CommandPath(), args)
	}
	return nil
}

// exactArgs requires n positional arguments (exit 2 otherwise).
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s takes %d argument(s), got %d", c.CommandPath(), n, len(args))
		}
		return nil
	}
}
