package cmd

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/internal/cli"
)

type auditExportOptions struct {
	out    string
	format string
}

// newAuditExportCommand is `station audit export --out DIR [--format jsonl|csv]`.
func newAuditExportCommand(g *globals) *cobra.Command {
	o := &auditExportOptions{}
	c := &cobra.Command{
		Use:   "export --out DIR [--format jsonl|csv]",
		Short: "Write the audit trail for an auditor, verifiable offline",
		Long: "Writes the records up to the latest signed checkpoint, all kept checkpoints, the station\n" +
			"public key and a README to DIR (which must be empty or absent), atomically: nothing appears\n" +
			"under DIR and nothing is recorded unless the whole export was written and verified. The\n" +
			"export is then recorded in the log and its checkpoint kept. Check it with\n" +
			"station audit verify --export DIR --key PUB.pem.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.out == "" {
				return cli.Usagef("--out is required")
			}
			if !slices.Contains(auditFormats, o.format) {
				return cli.Usagef("--format %q: want %s", o.format, strings.Join(auditFormats, " or "))
			}
			env, err := g.openEnv()
			if err != nil {
				return err
			}
			defer env.Close()
			res, err := env.Log.Export(o.out, audit.ExportOptions{Format: o.format, Operator: env.Config.Station.Operator})
			if err != nil {
				return fmt.Errorf("audit export: %w", err)
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), struct {
					*audit.ExportResult
					outcome
				}{ExportResult: res})
			}
			fmt.Fprintf(c.OutOrStdout(), "exported %d records to %s\ncheckpoint: size %d, root %s\nkeep %s away from this station: later verifications can use it as --anchor\n",
				res.Records, o.out, res.Checkpoint.Size, res.Checkpoint.Root, filepath.Join(o.out, audit.FileCheckpoint))
			return nil
		},
	}
	c.Flags().StringVar(&o.out, "out", "", "folder to write the export to (must be empty or absent)")
	c.Flags().StringVar(&o.format, "format", "jsonl", "records format: jsonl or csv")
	return c
}

// auditFormats are the records formats of station audit export.
var auditFormats = []string{"jsonl", "csv"}
