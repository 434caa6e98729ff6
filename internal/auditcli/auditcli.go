// Package auditcli is station-audit, the auditor's verifier: the offline
// checks of `station audit verify --export` and `station enroll
// verify-export` in a program that links neither go-tpm nor cgo code, so it
// cross-builds with CGO_ENABLED=0 for the auditor's Windows or macOS laptop
// (docs/AUDITOR.md). It reuses the audit and enroll packages' verifiers, and
// exits with station's codes for the same outcome (TestStationAuditExitCodes
// in cmd compares its table with station's, sentinel by sentinel).
package auditcli

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
)

type options struct {
	output string
}

func (o *options) json() bool { return o.output == "json" }

// NewRootCommand builds station-audit's command tree; version is the
// build's (internal/buildinfo).
func NewRootCommand(version string) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "station-audit",
		Short: "Verify station's audit and enrollment exports offline",
		Long: "station-audit checks what a station exported, offline, trusting only the station public key\n" +
			"you give it with --key (obtained from the station operator out of band, `station audit pubkey`):\n" +
			"an audit export (station-audit verify) and a DPS enrollment export (station-audit export verify).\n" +
			"Exit codes are station's: 0 verified, 2 usage, 4 integrity violation.",
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cli.UnknownCommand,
		RunE:          func(c *cobra.Command, _ []string) error { return c.Help() },
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if o.output != "text" && o.output != "json" {
				return cli.Usagef("--output %q: want text or json", o.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.Usage(err) })
	root.PersistentFlags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	root.Flags().Bool("version", false, "print the version and commit")
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	export := &cobra.Command{
		Use:   "export",
		Short: "Check DPS enrollment exports",
		Args:  cli.UnknownCommand,
		RunE:  func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	export.AddCommand(newExportVerifyCommand(o))
	root.AddCommand(newVerifyCommand(o), export)
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

// newVerifyCommand is `station-audit verify DIR --key PUB.pem [--anchor
// FILE]`: station audit verify --export DIR.
func newVerifyCommand(o *options) *cobra.Command {
	var key, anchorPath string
	c := &cobra.Command{
		Use:   "verify EXPORT_DIR --key PUB.pem [--anchor FILE]",
		Short: "Check an audit export: hash chain, Merkle tree, checkpoint signatures",
		Long: "Recomputes the export's hash chain, Merkle tree and every checkpoint signature with the key\n" +
			"given by --key (never the one inside the export), and reports the first bad record's\n" +
			"sequence number (exit 4). --anchor takes a checkpoint kept from earlier (a checkpoint file,\n" +
			"an earlier export folder or a unit proof file) and proves the export still extends it.\n" +
			"Equivalent to `station audit verify --export EXPORT_DIR --key PUB.pem [--anchor FILE]`.",
		Args: cli.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			pub, err := readKey(key)
			if err != nil {
				return err
			}
			var anchor []byte
			if anchorPath != "" {
				if anchor, err = audit.ReadAnchor(anchorPath, ""); err != nil {
					return cli.Usagef("--anchor: %v", err)
				}
			}
			rep, err := audit.VerifyExport(args[0], pub, anchor)
			if err != nil {
				var ve *audit.VerifyError
				if o.json() && errors.As(err, &ve) {
					cli.WriteJSON(c.OutOrStdout(), map[string]any{"verified": false, "seq": ve.Seq, "reason": ve.Reason})
				}
				return fmt.Errorf("audit verify: %w", err)
			}
			for _, w := range rep.Warnings {
				fmt.Fprintf(c.ErrOrStderr(), "warning: %s\n", w)
			}
			if o.json() {
				return cli.WriteJSON(c.OutOrStdout(), rep)
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "audit trail of %s verified: %d records, %d checkpoints signed by key %s\n", rep.Origin, rep.Records, rep.Checkpoints, rep.KeyID)
			if rep.Latest != nil {
				fmt.Fprintf(w, "latest checkpoint: size %d, root %s\n", rep.Latest.Size, rep.Latest.Root)
			}
			if rep.Anchor != nil {
				fmt.Fprintf(w, "the log extends the anchor checkpoint (size %d)\n", rep.Anchor.Size)
			}
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "the station public key (PEM) you trust (required)")
	c.Flags().StringVar(&anchorPath, "anchor", "", "an earlier signed checkpoint the export must extend")
	return c
}

// newExportVerifyCommand is `station-audit export verify DIR --key
// PUB.pem`: station enroll verify-export DIR --key PUB.pem.
func newExportVerifyCommand(o *options) *cobra.Command {
	var key string
	c := &cobra.Command{
		Use:   "verify DIR --key PUB.pem",
		Short: "Check a DPS enrollment export: signature, every file's hash, nothing missing or added",
		Long: "Checks manifest.sig over manifest.json with the key given by --key (and only that key), then\n" +
			"every file's size and SHA-256, that no listed file is missing and no other file was added, and\n" +
			"each bulk operation's mode and count. Exit 4 when anything does not verify. Equivalent to\n" +
			"`station enroll verify-export DIR --key PUB.pem`.",
		Args: cli.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if fi, err := os.Stat(args[0]); err != nil || !fi.IsDir() {
				return cli.Usagef("%s is not an export folder", args[0])
			}
			pub, err := readKey(key)
			if err != nil {
				return err
			}
			m, err := enroll.VerifyExport(args[0], pub)
			if err != nil {
				return err
			}
			if o.json() {
				return cli.WriteJSON(c.OutOrStdout(), struct {
					Dir      string           `json:"dir"`
					Verified bool             `json:"verified"`
					Manifest *enroll.Manifest `json:"manifest"`
				}{args[0], true, m})
			}
			asOf := m.AsOf
			if asOf == "" {
				asOf = "-"
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: verified: %s export of station %s, %s in %s (as of %s)\n",
				args[0], m.Format, m.StationID, cli.Plural(m.Counts.Enrolled+m.Counts.Groups, "enrollment"), cli.Plural(len(m.Files), "file"), asOf)
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "the exporting station's public key (PEM), the only key trusted (required)")
	return c
}

// readKey reads the PEM public key given with --key; there is no default:
// a key found next to the data would prove nothing.
func readKey(path string) (crypto.PublicKey, error) {
	if path == "" {
		return nil, cli.Usagef("--key PUB.pem is required: the verifier trusts only the key you give it, never one shipped with the data")
	}
	return cli.ReadKey("--key", path, audit.ParsePublicKeyPEM)
}

// Exit prints err once to w (with its hint) and returns the exit code.
func Exit(err error, w io.Writer) int {
	if err == nil {
		return cli.ExitOK
	}
	fmt.Fprintf(w, "station-audit: %v\n", err)
	if h := hint.Of(err); h != "" {
		fmt.Fprintf(w, "hint: %s\n", h)
	}
	return Code(err)
}
