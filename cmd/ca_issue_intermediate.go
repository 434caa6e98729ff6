package cmd

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/cli"
)

type caIssueIntermediateOptions struct {
	caKeyFlags
	issuerCert  string
	issuerKey   string
	issuerChain string
	root        string
}

// newCAIssueIntermediateCommand is `station ca issue-intermediate`.
func newCAIssueIntermediateCommand(g *globals) *cobra.Command {
	o := &caIssueIntermediateOptions{}
	c := &cobra.Command{
		Use:   "issue-intermediate --issuer-cert F --issuer-key URI --subject CN --out DIR [--path-len N] [--key-uri URI]",
		Short: "Create a factory or line intermediate CA signed by the root or another intermediate",
		Long: `Creates an intermediate CA signed by --issuer-cert/--issuer-key and writes DIR/ca.crt and
DIR/chain.pem (the issuer and the intermediates above it, without the root: what
pki.chain expects when this CA is the line intermediate).

--path-len 0 (the default) makes a line intermediate that issues only device
certificates; a factory intermediate that signs line intermediates needs --path-len 1.
The issuer key is an encrypted PEM file (password in $STATION_CA_ISSUER_PASSWORD) or a
pkcs11:/softkms: URI. With --root, the issuer must verify up to that root first.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			kt, err := o.check()
			if err != nil {
				return err
			}
			if o.issuerCert == "" || o.issuerKey == "" {
				return cli.Usagef("--issuer-cert and --issuer-key are required")
			}
			parent, err := certgen.ReadCertificate(o.issuerCert)
			if err != nil {
				return fmt.Errorf("%w: issuer certificate: %w", certgen.ErrIssuer, err)
			}
			chain, root, err := readCertFiles(o.issuerChain, o.root)
			if err != nil {
				return err
			}
			if err := certgen.CheckCA(parent); err != nil {
				return err
			}
			if root != nil {
				if err := certgen.VerifyChain(parent, chain, root, time.Now()); err != nil {
					return err
				}
			}
			// Every password is asked before the slow work (decrypting the
			// issuer key), after the overwrite check.
			pw := newPasswords(c, g)
			defer pw.close()
			issuerPW, err := pw.issuer(o.issuerKey)
			if err != nil {
				return err
			}
			keyFile, password, err := o.keyPassword(pw)
			if err != nil {
				return err
			}
			pw.close()
			issuerKey, err := certgen.OpenKey(o.issuerKey, issuerPW)
			if err != nil {
				return err
			}
			defer issuerKey.Close()
			key, err := certgen.CreateKey(o.keyURI, kt)
			if err != nil {
				return err
			}
			defer key.Close()
			g.log().Info("creating intermediate", "subject", o.subject, "key_type", fmt.Sprint(kt), "parent", parent.Subject.CommonName)
			cert, err := certgen.NewIntermediate(parent, issuerKey.Signer, key.Signer.Public(), certgen.CAOptions{
				Subject: o.subject, Validity: o.validity, PathLen: o.pathLen, NameConstraints: o.nameConstraints, Now: time.Now(),
				ClipToIssuer: !c.Flags().Changed("validity"), // the default ends with the issuer; an explicit one is checked
			})
			if err != nil {
				return err
			}
			// chain.pem: what lies between this CA and the root.
			above := []*x509.Certificate{}
			for _, x := range append([]*x509.Certificate{parent}, chain...) {
				if x.CheckSignatureFrom(x) == nil || (root != nil && x.Equal(root)) {
					continue // a self-signed root is the trust anchor, not part of the chain
				}
				above = append(above, x)
			}
			return o.writeCA(c, g, "intermediate CA", cert, key, keyFile, password, map[string][]*x509.Certificate{"chain.pem": above})
		},
	}
	o.add(c, 10*365*24*time.Hour, 0, "CA levels allowed below this one (0: a line intermediate; 1: a factory intermediate)")
	fl := c.Flags()
	fl.StringVar(&o.issuerCert, "issuer-cert", "", "certificate of the issuing CA (required)")
	fl.StringVar(&o.issuerKey, "issuer-key", "", "its key: encrypted PEM file, or pkcs11:/softkms: URI (required)")
	fl.StringVar(&o.issuerChain, "issuer-chain", "", "PEM file of the intermediates above the issuer (its chain.pem)")
	fl.StringVar(&o.root, "root", "", "pinned root: the issuer must verify up to it")
	return c
}
