package cmd

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.step.sm/crypto/pemutil"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/cli"
)

type caIssueLeafOptions struct {
	issuerCert, issuerKey, chain, root string
	csr, registrationID, serial        string
	sanURI, out                        string
	validity, warehouse                time.Duration
	force                              bool
}

// newCAIssueLeafCommand is `station ca issue-leaf`: one device certificate
// from a CSR file, under the full issuance policy, outside provisioning
// (lab units, checks of a line intermediate). It keeps no record: provision
// is what checks serial uniqueness and the issuance ceiling in the database.
func newCAIssueLeafCommand(g *globals) *cobra.Command {
	o := &caIssueLeafOptions{}
	c := &cobra.Command{
		Use:   "issue-leaf --issuer-cert F --issuer-key URI --root F --csr F --registration-id ID --serial SN --out F",
		Short: "Issue one device certificate from a CSR under the issuance policy (no database record)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			for _, f := range []struct{ name, v string }{{"--issuer-cert", o.issuerCert}, {"--issuer-key", o.issuerKey}, {"--root", o.root},
				{"--csr", o.csr}, {"--registration-id", o.registrationID}, {"--serial", o.serial}, {"--out", o.out}} {
				if f.v == "" {
					return cli.Usagef("%s is required", f.name)
				}
			}
			if !o.force {
				if _, err := os.Lstat(o.out); err == nil {
					return fmt.Errorf("%w: %s (pass --force to replace it)", certgen.ErrExists, o.out)
				}
			}
			data, err := os.ReadFile(o.csr)
			if err != nil {
				return cli.Usagef("--csr: %v", err)
			}
			csr, err := pemutil.ParseCertificateRequest(data)
			if err != nil {
				return cli.Usagef("--csr %s: %v", o.csr, err)
			}
			pw := newPasswords(c, g)
			issuerPW, err := pw.issuer(o.issuerKey)
			pw.close()
			if err != nil {
				return err
			}
			is, err := certgen.OpenIssuer(o.issuerCert, o.issuerKey, o.chain, o.root, issuerPW)
			if err != nil {
				return err
			}
			defer is.Close()
			leaf, err := is.Issue(certgen.LeafRequest{CSR: csr, RegistrationID: o.registrationID, UnitSerial: o.serial,
				SANURI: o.sanURI, Validity: o.validity, Warehouse: o.warehouse, Now: time.Now()})
			if err != nil {
				return err
			}
			if err := certgen.WriteCertificates(o.out, o.force, leaf); err != nil {
				return err
			}
			r := struct {
				Cert           string    `json:"cert"`
				RegistrationID string    `json:"registration_id"`
				Serial         string    `json:"cert_serial"`
				SHA256         string    `json:"sha256"`
				NotAfter       time.Time `json:"not_after"`
				IssuerInHSM    bool      `json:"issuer_in_hsm"`
				outcome
			}{o.out, leaf.Subject.CommonName, certgen.SerialHex(leaf), certgen.Fingerprint(leaf), leaf.NotAfter, is.InHSM(), outcome{}}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), r)
			}
			fmt.Fprintf(c.OutOrStdout(), "device certificate %q written to %s\n  serial:    %s\n  sha256:    %s\n  not after: %s\n",
				r.RegistrationID, r.Cert, r.Serial, r.SHA256, r.NotAfter.Format(time.RFC3339))
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.issuerCert, "issuer-cert", "", "the line intermediate's certificate")
	fl.StringVar(&o.issuerKey, "issuer-key", "", "its key: encrypted PEM file, or pkcs11:/softkms: URI")
	fl.StringVar(&o.chain, "chain", "", "intermediates above the issuer, without the root")
	fl.StringVar(&o.root, "root", "", "the pinned root")
	fl.StringVar(&o.csr, "csr", "", "the device's certificate request (PEM)")
	fl.StringVar(&o.registrationID, "registration-id", "", "DPS registration ID: the certificate's CN")
	fl.StringVar(&o.serial, "serial", "", "the unit's serial number (bound in the SAN URI)")
	fl.StringVar(&o.sanURI, "san-uri", certgen.DefaultSANURI, "SAN URI template")
	fl.DurationVar(&o.validity, "validity", 43800*time.Hour, "field life")
	fl.DurationVar(&o.warehouse, "warehouse", 8760*time.Hour, "warehouse period before the field life")
	fl.StringVar(&o.out, "out", "", "where to write the certificate (PEM)")
	fl.BoolVar(&o.force, "force", false, "replace an existing --out file")
	return c
}
