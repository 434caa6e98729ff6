package cmd

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/tpmops"
)

func newEKCommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ek",
		Short: "Endorsement-key certificates: check them against the TPM vendor roots",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return cli.Usagef("ek needs a subcommand: check") },
	}
	c.AddCommand(newEKCheckCommand(g))
	return c
}

type ekCheckOptions struct {
	roots string
}

func newEKCheckCommand(g *globals) *cobra.Command {
	o := &ekCheckOptions{}
	c := &cobra.Command{
		Use:   "check FILE... [--roots DIR]",
		Short: "Check EK certificates (DER, PEM or raw NV dumps) against the TPM vendor roots",
		Long: `Check each EK certificate file against the TPM vendor roots (tpm.vendor_roots,
or --roots): whether it chains, and if not, what is missing from the roots
folder. A file may be PEM, DER, or the raw contents of an EK certificate NV
index (a TCG PC-Client header before the DER, padding after it: both are
reported). The roots folder's certificates are compared with the CAs station
knows (docs/VENDOR-ROOTS.md), naming what it holds and what it lacks.
Exit 0 when every certificate chains, 3 when some do not, 2 when a file
holds no readable certificate.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			roots, err := o.loadRoots(g)
			if err != nil {
				return err
			}
			rep := checkEKFiles(roots, args, time.Now())
			if g.json() {
				if err := cli.WriteJSON(c.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				rep.writeText(c.OutOrStdout())
			}
			return rep.err()
		},
	}
	c.Flags().StringVar(&o.roots, "roots", "", "folder (or PEM file) of trusted TPM vendor CA certificates (default: tpm.vendor_roots)")
	return c
}

// loadRoots reads --roots, else the configured tpm.vendor_roots.
func (o *ekCheckOptions) loadRoots(g *globals) (*tpmops.VendorRoots, error) {
	if o.roots != "" {
		r, err := tpmops.LoadVendorRoots(o.roots)
		if err != nil {
			return nil, cli.Usagef("--roots: %v", err)
		}
		return r, nil
	}
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	if cfg.TPM.VendorRoots == "" {
		return nil, &configs.Error{Key: string(configs.KeyVendorRoots), Err: errors.New("not set: name the folder of your TPM vendors' CA certificates, or pass --roots DIR")}
	}
	r, err := tpmops.LoadVendorRoots(cfg.File(configs.KeyVendorRoots))
	if err != nil {
		return nil, &configs.Error{Key: string(configs.KeyVendorRoots), Err: err}
	}
	return r, nil
}

// ekCheckReport is `station ek check`'s output (-o json: this document).
type ekCheckReport struct {
	Roots    ekRootsReport   `json:"roots"`
	Files    []ekCheckResult `json:"files"`
	Chained  int             `json:"chained"`
	ExitCode int             `json:"exit_code"`
	Hint     string          `json:"hint"`
}

type ekRootsReport struct {
	Path    string           `json:"path"`
	Certs   int              `json:"certificates"`
	Known   []tpmops.KnownCA `json:"known"`
	Unknown []tpmops.KnownCA `json:"unknown"`
	Lacking []tpmops.KnownCA `json:"lacking"`
	Skipped []ekSkipped      `json:"skipped"`
}

type ekSkipped struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

type ekCheckResult struct {
	File      string   `json:"file"`
	Readable  bool     `json:"readable"`
	Chains    bool     `json:"chains"`
	Key       string   `json:"key,omitempty"`
	Issuer    string   `json:"issuer,omitempty"`
	SHA256    string   `json:"sha256,omitempty"`
	TCGHeader bool     `json:"tcg_header"`
	Padding   int      `json:"padding"`
	Chain     []string `json:"chain,omitempty"` // subjects, the EK certificate's issuer first, the anchor last
	Anchor    string   `json:"anchor_sha256,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	// Missing names the known CAs that would let it chain (the issuer the
	// chain stops at, and what that issuer needs above it).
	Missing  []tpmops.KnownCA `json:"missing,omitempty"`
	ExitCode int              `json:"exit_code"`
	Hint     string           `json:"hint"`
}

func checkEKFiles(roots *tpmops.VendorRoots, files []string, now time.Time) *ekCheckReport {
	inv := roots.Inventory()
	rep := &ekCheckReport{Roots: ekRootsReport{
		Path: roots.Path, Certs: len(roots.Certs),
		Known: nonNil(inv.Known), Unknown: nonNil(inv.Unknown), Lacking: nonNil(inv.Lacking), Skipped: []ekSkipped{},
	}, Files: []ekCheckResult{}}
	for _, s := range roots.Skipped {
		rep.Roots.Skipped = append(rep.Roots.Skipped, ekSkipped{File: s.File, Reason: s.Err.Error()})
	}
	for _, f := range files {
		r := checkEKFile(roots, f, now)
		if r.Chains {
			rep.Chained++
		}
		rep.ExitCode = max(rep.ExitCode, r.ExitCode)
		rep.Files = append(rep.Files, r)
	}
	// Unreadable input (2) outranks untrusted certificates (3).
	for _, r := range rep.Files {
		if !r.Readable {
			rep.ExitCode = ExitUsage
		}
	}
	switch rep.ExitCode {
	case ExitPolicy:
		rep.Hint = "add the missing vendor CA certificates to the roots folder if the vendor is approved (docs/VENDOR-ROOTS.md says where each vendor publishes them)"
	case ExitUsage:
		rep.Hint = "give EK certificates as PEM, DER or raw NV index dumps"
	}
	return rep
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func checkEKFile(roots *tpmops.VendorRoots, file string, now time.Time) ekCheckResult {
	r := ekCheckResult{File: file}
	raw, err := os.ReadFile(file)
	if err == nil {
		var c *tpmops.EKCertificate
		c, err = tpmops.ParseEKCertificate(file, raw)
		if err == nil {
			return checkEKCertificate(roots, c, nil, r, now)
		}
	}
	r.Reason, r.ExitCode = err.Error(), ExitUsage
	r.Hint = "not an EK certificate file: give PEM, DER or a raw NV index dump"
	return r
}

// checkEKCertificate gives the chain verdict of one EK certificate against
// the roots, through untrusted intermediates (a TPM's NV chain; nil for
// none).
func checkEKCertificate(roots *tpmops.VendorRoots, c *tpmops.EKCertificate, inters []*x509.Certificate, r ekCheckResult, now time.Time) ekCheckResult {
	r.Readable, r.TCGHeader, r.Padding = true, c.Header, c.Padding
	sum := sha256.Sum256(c.DER)
	r.SHA256 = hex.EncodeToString(sum[:])
	if c.ParseErr != nil {
		r.Reason, r.ExitCode = fmt.Sprintf("%v: Go's X.509 parser rejects it", c.ParseErr), ExitPolicy
		return r
	}
	r.Key, r.Issuer = keyName(c.Cert), c.Cert.Issuer.String()
	chain, err := roots.Chain(c.Cert, inters, now)
	if err == nil {
		r.Chains = true
		for _, p := range chain[1:] {
			r.Chain = append(r.Chain, p.Subject.String())
		}
		a := sha256.Sum256(chain[len(chain)-1].Raw)
		r.Anchor = hex.EncodeToString(a[:])
		return r
	}
	r.Reason, r.ExitCode = err.Error(), ExitPolicy
	var ce *tpmops.ChainError
	if errors.As(err, &ce) && ce.MissingIssuer != nil {
		r.Missing = missingKnown(roots, ce.MissingIssuer)
		if len(r.Missing) > 0 {
			r.Hint = "station knows the missing CA (see missing): fetch it from its vendor (docs/VENDOR-ROOTS.md) and add it to the roots folder if the vendor is approved"
		} else {
			r.Hint = "the issuer is not a CA station knows: ask the TPM's vendor for its EK CA certificates"
		}
	}
	return r
}

// missingKnown lists the known CAs that issued c, then, going up, those
// that issued them, until one is in the roots folder or a root is reached.
func missingKnown(roots *tpmops.VendorRoots, c *x509.Certificate) []tpmops.KnownCA {
	inFolder := map[string]bool{}
	for _, f := range roots.Certs {
		s := sha256.Sum256(f.Raw)
		inFolder[hex.EncodeToString(s[:])] = true
	}
	var out []tpmops.KnownCA
	seen := map[string]bool{}
	next := tpmops.KnownIssuers(c)
	for len(next) > 0 && len(out) < 16 {
		var up []tpmops.KnownCA
		for _, k := range next {
			if seen[k.SHA256] || inFolder[k.SHA256] {
				continue
			}
			seen[k.SHA256] = true
			out = append(out, k)
			if !k.SelfSigned {
				up = append(up, knownIssuersOf(k)...)
			}
		}
		next = up
	}
	return out
}

// knownIssuersOf finds the known CAs that may have issued k.
func knownIssuersOf(k tpmops.KnownCA) []tpmops.KnownCA {
	var out []tpmops.KnownCA
	for _, p := range tpmops.KnownCAs() {
		if p.SHA256 != k.SHA256 && (p.Subject == k.Issuer || (k.AKI != "" && p.SKI == k.AKI)) {
			out = append(out, p)
		}
	}
	return out
}

// keyName names a certified public key in the config's words.
func keyName(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ecc-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	}
	return c.PublicKeyAlgorithm.String()
}

func (rep *ekCheckReport) writeText(w io.Writer) {
	rr := rep.Roots
	fmt.Fprintf(w, "roots %s: %d certificates (%d known, %d not in station's manifest)\n", rr.Path, rr.Certs, len(rr.Known), len(rr.Unknown))
	for _, s := range rr.Skipped {
		fmt.Fprintf(w, "  skipped %s: %s\n", s.File, s.Reason)
	}
	for _, r := range rep.Files {
		var notes []string
		if r.TCGHeader {
			notes = append(notes, "TCG NV header skipped")
		}
		if r.Padding > 0 {
			notes = append(notes, fmt.Sprintf("%d padding bytes cut", r.Padding))
		}
		note := ""
		if len(notes) > 0 {
			note = " (" + strings.Join(notes, ", ") + ")"
		}
		switch {
		case r.Chains:
			fmt.Fprintf(w, "%s: chains: %s EK certificate via %s%s\n", r.File, r.Key, strings.Join(r.Chain, " -> "), note)
		case !r.Readable:
			fmt.Fprintf(w, "%s: unreadable: %s\n", r.File, r.Reason)
		default:
			fmt.Fprintf(w, "%s: does not chain: %s%s\n", r.File, strings.TrimPrefix(r.Reason, "untrusted EK certificate: "), note)
			for _, k := range r.Missing {
				fmt.Fprintf(w, "  missing known CA %s (%s, SHA-256 %s, valid %s to %s)\n", k.Subject, k.Vendor, k.SHA256,
					k.NotBefore.Format(time.DateOnly), k.NotAfter.Format(time.DateOnly))
			}
		}
	}
	fmt.Fprintf(w, "%d of %d EK certificates chain\n", rep.Chained, len(rep.Files))
}

// err is the command's outcome, printed once to stderr by Exit.
func (rep *ekCheckReport) err() error {
	switch rep.ExitCode {
	case ExitOK:
		return nil
	case ExitUsage:
		n := 0
		for _, r := range rep.Files {
			if !r.Readable {
				n++
			}
		}
		return cli.Usagef("%d of %d files hold no readable EK certificate", n, len(rep.Files))
	}
	return fmt.Errorf("%w: %d of %d EK certificates do not chain to %s", tpmops.ErrUntrustedEKCert, len(rep.Files)-rep.Chained, len(rep.Files), rep.Roots.Path)
}
