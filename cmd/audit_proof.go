package cmd

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/internal/cli"
)

type auditProofOptions struct {
	serial string
	out    string
}

// newAuditProofCommand is `station audit proof --serial SN --out FILE`.
func newAuditProofCommand(g *globals) *cobra.Command {
	o := &auditProofOptions{}
	c := &cobra.Command{
		Use:   "proof --serial SN --out FILE",
		Short: "Write an inclusion proof of one unit's records in a signed checkpoint",
		Long: "Shows one device's history without the rest of the log: its records, each with an\n" +
			"RFC 6962 inclusion proof in a checkpoint signed by the station. Check it offline with\n" +
			"station audit verify --proof FILE --key PUB.pem.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.serial == "" || o.out == "" {
				return cli.Usagef("--serial and --out are required")
			}
			env, err := g.openEnv()
			if err != nil {
				return err
			}
			defer env.Close()
			proof, err := env.Log.Proof(o.serial)
			if err != nil {
				return fmt.Errorf("audit proof: %w", err)
			}
			if o.out == "-" {
				_, err = c.OutOrStdout().Write(append(proof, '\n'))
				return err
			}
			if err := os.WriteFile(o.out, append(proof, '\n'), 0o644); err != nil {
				return fmt.Errorf("writing proof: %w", err)
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), map[string]any{"serial": o.serial, "out": o.out, "exit_code": ExitOK, "hint": ""})
			}
			fmt.Fprintf(c.OutOrStdout(), "wrote the proof of unit %s's records to %s\n", o.serial, o.out)
			return nil
		},
	}
	c.Flags().StringVar(&o.serial, "serial", "", "unit serial number")
	c.Flags().StringVar(&o.out, "out", "", "file to write the proof to (- for stdout)")
	return c
}
