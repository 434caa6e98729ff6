package cmd

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/store"
)

func init() {
	register(newAuditCommand)
	addClass(audit.ErrIntegrity, ExitIntegrity)
	addClass(audit.ErrKey, ExitUsage)
	addClass(audit.ErrStation, ExitUsage)
	addClass(audit.ErrExportDir, ExitUsage)
	addClass(audit.ErrNotExport, ExitUsage)
}

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

// dbTimeout is how long audit commands wait for another process's lock.
const dbTimeout = 5 * time.Second

// KMSSigner opens a station key given as a kms URI (pkcs11:, tpmkms:...).
// The audit package takes any crypto.Signer; the build that links kms
// support (cgo) sets this. Nil means only PEM files are supported.
var KMSSigner func(ctx context.Context, uri string) (crypto.Signer, error)

// auditSigner loads the station's audit signing key named by
// station.signing_key.
func auditSigner(ctx context.Context, cfg *configs.Config) (crypto.Signer, error) {
	ref := cfg.Station.SigningKey
	switch {
	case ref == "":
		return nil, &configs.Error{Key: "station.signing_key", Err: errors.New("not set")}
	case configs.IsURI(ref):
		if KMSSigner == nil {
			return nil, &configs.Error{Key: "station.signing_key", Err: fmt.Errorf("%q: kms URIs are not supported by this build", ref)}
		}
		s, err := KMSSigner(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("opening station key %s: %w", ref, err)
		}
		return s, nil
	}
	return audit.LoadPrivateKey(cfg.Path(ref))
}

// openStationDB opens the existing station database (never creating one:
// verifying a log that is not there must fail, not pass on an empty file).
func openStationDB(cfg *configs.Config) (*store.DB, error) {
	if _, err := os.Stat(cfg.Station.DB); err != nil {
		return nil, usageErrorf("no station database at %s (run station init, or give --db)", cfg.Station.DB)
	}
	return store.Open(cfg.Station.DB, dbTimeout)
}

// openAuditLog opens the database and the station's audit log for writing.
func openAuditLog(c *cobra.Command, g *globals) (*audit.Log, *store.DB, *configs.Config, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, nil, nil, err
	}
	signer, err := auditSigner(ctx(c), cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	db, err := openStationDB(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	l, err := audit.Open(db.DB, cfg.Station.ID, g.version, signer)
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	return l, db, cfg, nil
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
