package cmd

import (
	"crypto"
	"os"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
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

// readPublicKey reads the PEM public key an auditor passes with --key.
func readPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("--key: %v", err)
	}
	pub, err := audit.ParsePublicKeyPEM(data)
	if err != nil {
		return nil, usageErrorf("--key %s: %v", path, err)
	}
	return pub, nil
}
