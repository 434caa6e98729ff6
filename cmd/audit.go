package cmd

import (
	"github.com/spf13/cobra"
)

// newAuditCommand is `station audit`: the signed audit trail.
func newAuditCommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Check, export and prove the signed audit trail",
		Long: "The audit trail records every provisioning step, verification, CA issuance, revocation,\n" +
			"export and configuration change in a hash-chained, Merkle-tree, checkpoint-signed log.\n" +
			"Auditors check it offline with the station's public key (station audit pubkey).",
	}
	c.AddCommand(newAuditVerifyCommand(g), newAuditExportCommand(g), newAuditPubkeyCommand(g), newAuditProofCommand(g))
	return c
}
