package cmd

import (
	"github.com/factory-id/station/internal/keyid"
	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

// newAuditPubkeyCommand is `station audit pubkey`.
func newAuditPubkeyCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pubkey",
		Short: "Print the station's audit public key (PEM) for auditors to keep",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			pub, err := station.LoadSigningKey(cfg)
			if err != nil {
				return err
			}
			pemBytes, err := audit.MarshalPublicKeyPEM(pub)
			if err != nil {
				return err
			}
			if !g.json() {
				_, err = c.OutOrStdout().Write(pemBytes)
				return err
			}
			origin := audit.Origin(cfg.Station.ID)
			noteID, err := audit.KeyID(origin, pub)
			if err != nil {
				return err
			}
			id, err := keyid.Of(pub)
			if err != nil {
				return err
			}
			vkey, err := audit.VerifierKey(origin, pub)
			if err != nil {
				return err
			}
			return cli.WriteJSON(c.OutOrStdout(), map[string]any{
				"pem": string(pemBytes), "origin": origin, "key_id": id, "note_key_id": audit.FormatKeyID(noteID), "verifier_key": vkey,
			})
		},
	}
}
