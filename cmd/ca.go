package cmd

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
)

// Password variables of the ca commands (docs/CLI.md).
const (
	envCAKeyPassword    = configs.EnvCAKeyPassword
	envCAIssuerPassword = configs.EnvCAIssuerPassword
)

// newCACommand is `station ca`: the offline PKI ceremony.
func newCACommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ca",
		Short: "Offline PKI ceremony: root, factory and line intermediates",
		Long: `The ca commands run on the PKI ceremony machine, offline. One ceremony makes
the root, the factory intermediate (--path-len 1) and the line intermediate
(--path-len 0) that the station uses to issue device certificates:

  station ca init-root --subject "Acme Device Root" --out root
  station ca issue-intermediate --issuer-cert root/ca.crt --issuer-key root/ca.key \
      --subject "Acme Factory 1" --path-len 1 --out factory
  station ca issue-intermediate --issuer-cert factory/ca.crt --issuer-key factory/ca.key \
      --issuer-chain factory/chain.pem --root root/ca.crt --subject "Acme Line 1" --out line

Each writes DIR/ca.crt. The key goes to --key-uri (pkcs11:...;id=..;object=..., created
inside the token, or softkms:path=FILE) or to DIR/ca.key, encrypted with the password in
$STATION_CA_KEY_PASSWORD (asked twice on a terminal). An encrypted issuer key is opened
with $STATION_CA_ISSUER_PASSWORD (asked on a terminal).`,
	}
	c.AddCommand(newCAInitRootCommand(g), newCAIssueIntermediateCommand(g), newCAIssueLeafCommand(g))
	return c
}

// caKeyFlags are the flags shared by the commands that make a CA.
type caKeyFlags struct {
	subject         string
	out             string
	keyURI          string
	keyType         string
	validity        time.Duration
	pathLen         int
	nameConstraints []string
	force           bool
}

func (f *caKeyFlags) add(c *cobra.Command, validity time.Duration, pathLen int, pathHelp string) {
	fl := c.Flags()
	fl.StringVar(&f.subject, "subject", "", "common name of the new CA (required)")
	fl.StringVar(&f.out, "out", "", "folder for ca.crt (and ca.key) (required)")
	fl.StringVar(&f.keyURI, "key-uri", "", "create the key here instead of DIR/ca.key: pkcs11:...;id=%01;object=NAME?pin-source=FILE or softkms:path=FILE")
	fl.StringVar(&f.keyType, "key-type", string(certgen.ECP256), "key algorithm: ec-p256, ec-p384 or rsa-3072")
	fl.DurationVar(&f.validity, "validity", validity, "how long the CA is valid")
	fl.IntVar(&f.pathLen, "path-len", pathLen, pathHelp)
	fl.StringArrayVar(&f.nameConstraints, "name-constraint", nil, "permitted subtree dns:D, email:E, uri:D or ip:CIDR; prefix ! to exclude (repeatable)")
	fl.BoolVar(&f.force, "force", false, "replace an existing ca.crt / ca.key in --out")
}

func (f *caKeyFlags) check() (certgen.KeyType, error) {
	if strings.TrimSpace(f.subject) == "" {
		return "", cli.Usagef("--subject is required")
	}
	if f.out == "" {
		return "", cli.Usagef("--out is required")
	}
	kt, err := certgen.ParseKeyType(f.keyType)
	if err != nil {
		return "", cli.Usagef("--key-type: %v", err)
	}
	if f.validity <= 0 {
		return "", cli.Usagef("--validity must be positive")
	}
	if f.pathLen < -1 {
		return "", cli.Usagef("--path-len %d: want -1 (unlimited) or >= 0", f.pathLen)
	}
	if _, err := certgen.ParseNameConstraints(f.nameConstraints); err != nil {
		return "", cli.Usagef("--name-constraint: %v", err)
	}
	if f.keyURI != "" && !certgen.IsKMSURI(f.keyURI) {
		return "", cli.Usagef("--key-uri %q: want a pkcs11: or softkms: URI", certgen.RedactURI(f.keyURI))
	}
	return kt, nil
}

// keyFile is where the new key is written as encrypted PEM ("" when it
// lives in a token).
func (f *caKeyFlags) keyFile() (string, error) {
	switch {
	case f.keyURI == "":
		return f.out + "/ca.key", nil
	case strings.HasPrefix(f.keyURI, "softkms:"):
		p, err := certgen.KeyFile(f.keyURI)
		if err != nil {
			return "", cli.Usagef("--key-uri: %v", err)
		}
		return p, nil
	}
	return "", nil
}

// refuseOverwrite checks, before any key is made, that nothing would be replaced.
func (f *caKeyFlags) refuseOverwrite(keyFile string) error {
	if f.force {
		return nil
	}
	for _, p := range []string{f.out + "/ca.crt", keyFile} {
		if p == "" {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			return hint.Wrap(fmt.Errorf("%w: %s (pass --force to replace it)", certgen.ErrExists, p), "the ceremony never overwrites a CA without --force")
		}
	}
	return nil
}

// keyPassword checks where the new CA key goes (refusing an overwrite) and,
// when it goes to a file, asks its password. Call it before any slow work, so
// that every prompt comes first.
func (f *caKeyFlags) keyPassword(pw *passwords) (keyFile string, password []byte, err error) {
	if keyFile, err = f.keyFile(); err != nil {
		return "", nil, err
	}
	if err := f.refuseOverwrite(keyFile); err != nil {
		return "", nil, err
	}
	if keyFile != "" {
		if password, err = pw.newKey(); err != nil {
			return "", nil, err
		}
	}
	return keyFile, password, nil
}

// writeCA writes the key (when in a file) then DIR/ca.crt and the extra
// files, and reports.
func (f *caKeyFlags) writeCA(c *cobra.Command, g *globals, kind string, cert *x509.Certificate, key *certgen.Key, keyFile string, password []byte, extra map[string][]*x509.Certificate) error {
	defer clear(password)
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	keyRef := key.Ref
	if keyFile != "" {
		if err := certgen.WriteKeyPEM(keyFile, key.Signer, password, f.force); err != nil {
			return err
		}
		keyRef = keyFile
	}
	certPath := f.out + "/ca.crt"
	if err := certgen.WriteCertificates(certPath, f.force, cert); err != nil {
		return err
	}
	files := map[string]string{}
	for name, certs := range extra {
		p := f.out + "/" + name
		if err := certgen.WriteCertificates(p, true, certs...); err != nil {
			return err
		}
		files[name] = p
	}
	return reportCA(c.OutOrStdout(), g.json(), kind, certPath, keyRef, key.InHSM, cert, files)
}

type caReport struct {
	Kind      string            `json:"kind"`
	Subject   string            `json:"subject"`
	Cert      string            `json:"cert"`
	Key       string            `json:"key"`
	KeyInHSM  bool              `json:"key_in_hsm"`
	SHA256    string            `json:"sha256"`
	Serial    string            `json:"serial"`
	NotBefore time.Time         `json:"not_before"`
	NotAfter  time.Time         `json:"not_after"`
	PathLen   *int              `json:"path_len"`
	Files     map[string]string `json:"files,omitempty"`
	outcome
}

func reportCA(w io.Writer, asJSON bool, kind, certPath, keyRef string, inHSM bool, cert *x509.Certificate, files map[string]string) error {
	r := caReport{Kind: kind, Subject: cert.Subject.CommonName, Cert: certPath, Key: certgen.RedactURI(keyRef), KeyInHSM: inHSM,
		SHA256: certgen.Fingerprint(cert), Serial: certgen.SerialHex(cert), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Files: files}
	if cert.IsCA && (cert.MaxPathLen > 0 || cert.MaxPathLenZero) {
		n := cert.MaxPathLen
		r.PathLen = &n
	}
	if asJSON {
		return cli.WriteJSON(w, r)
	}
	where := "encrypted PEM"
	if inHSM {
		where = "in the token"
	}
	pl := "unlimited"
	if r.PathLen != nil {
		pl = fmt.Sprint(*r.PathLen)
	}
	fmt.Fprintf(w, "%s %q written to %s\n", kind, r.Subject, certPath)
	fmt.Fprintf(w, "  key:       %s (%s)\n", r.Key, where)
	fmt.Fprintf(w, "  sha256:    %s\n", r.SHA256)
	fmt.Fprintf(w, "  valid:     %s to %s\n", r.NotBefore.Format(time.RFC3339), r.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(w, "  path len:  %s\n", pl)
	for name, p := range files {
		fmt.Fprintf(w, "  %-10s %s\n", name+":", p)
	}
	return nil
}

// stdinTerminal returns the terminal's file descriptor when the command's
// input is an interactive terminal.
func stdinTerminal(c *cobra.Command) (int, bool) {
	f, ok := c.InOrStdin().(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// passwords asks the passwords a command needs, each from its environment
// variable or, on a terminal, at a prompt. From the first prompt until close
// the terminal does not echo, so a line typed ahead is never shown. Commands
// ask every password before the slow work (decrypting a key) begins.
type passwords struct {
	c       *cobra.Command
	g       *globals
	restore func()
}

func newPasswords(c *cobra.Command, g *globals) *passwords { return &passwords{c: c, g: g} }

// close gives the terminal its echo back.
func (p *passwords) close() {
	if p.restore != nil {
		p.restore()
	}
}

// ask prompts on the terminal; missing is the error when there is none.
func (p *passwords) ask(prompt string, missing error) ([]byte, error) {
	fd, ok := stdinTerminal(p.c)
	if !ok {
		return nil, missing
	}
	if p.restore == nil {
		p.restore = func() {}
		if r, err := echoOff(fd); err == nil {
			p.restore = r
		}
	}
	w := p.c.ErrOrStderr()
	fmt.Fprint(w, prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(w)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	return b, nil
}

// newKey returns the password protecting a new CA key: from
// $STATION_CA_KEY_PASSWORD, else asked twice on the terminal. It is never
// printed.
func (p *passwords) newKey() ([]byte, error) {
	if v := p.g.getenv(envCAKeyPassword); v != "" {
		if len(v) < certgen.MinPasswordLen {
			return nil, cli.Usagef("$%s is shorter than %d characters", envCAKeyPassword, certgen.MinPasswordLen)
		}
		return []byte(v), nil
	}
	p1, err := p.ask("Password for the new CA key: ",
		cli.Usagef("no password for the new CA key: set %s (or run on a terminal to be asked)", envCAKeyPassword))
	if err != nil {
		return nil, err
	}
	if len(p1) < certgen.MinPasswordLen {
		return nil, cli.Usagef("the password must have at least %d characters", certgen.MinPasswordLen)
	}
	p2, err := p.ask("Same password again: ", nil)
	if err != nil {
		return nil, err
	}
	defer clear(p2)
	if string(p1) != string(p2) {
		clear(p1)
		return nil, cli.Usagef("the two passwords differ")
	}
	return p1, nil
}

// issuer asks now for the password of the issuer key ref when it is an
// encrypted PEM ($STATION_CA_ISSUER_PASSWORD, else the terminal), and returns
// it as the password func certgen.OpenKey calls.
func (p *passwords) issuer(ref string) (func() ([]byte, error), error) {
	if !certgen.NeedsPassword(ref) {
		return nil, nil
	}
	pw := []byte(p.g.getenv(envCAIssuerPassword))
	if len(pw) == 0 {
		var err error
		pw, err = p.ask("Password of the issuer key: ",
			cli.Usagef("the issuer key is encrypted: set %s (or run on a terminal to be asked)", envCAIssuerPassword))
		if err != nil {
			return nil, err
		}
	}
	return func() ([]byte, error) { return pw, nil }, nil
}

// readIssuerChain reads --issuer-chain (may be empty) and --root (optional).
func readCertFiles(chainPath, rootPath string) (chain []*x509.Certificate, root *x509.Certificate, err error) {
	if chainPath != "" {
		if chain, err = certgen.ReadCertificates(chainPath); err != nil {
			return nil, nil, fmt.Errorf("%w: issuer chain: %w", certgen.ErrIssuer, err)
		}
	}
	if rootPath != "" {
		if root, err = certgen.ReadCertificate(rootPath); err != nil {
			return nil, nil, fmt.Errorf("%w: root: %w", certgen.ErrIssuer, err)
		}
	}
	return chain, root, nil
}
