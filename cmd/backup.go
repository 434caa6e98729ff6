package cmd

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

type backupOptions struct {
	out string
}

// newBackupCommand is `station backup --out FILE`.
func newBackupCommand(g *globals) *cobra.Command {
	o := &backupOptions{}
	c := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Write a consistent copy of the station database (also while the line runs)",
		Long: "Copies the station database to FILE (0600, written under a temporary name and renamed),\n" +
			"also while a provision batch holds it: the copy is taken between two commits and checked\n" +
			"(this station's, whole, every page readable) before it replaces FILE. Restore it by copying\n" +
			"it back to station.db while no station command runs, then run station audit verify.\n" +
			"See docs/DATABASE.md.",
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.out == "" {
				return cli.Usagef("--out FILE is required")
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			if a, err := os.Stat(o.out); err == nil {
				if b, err := os.Stat(cfg.Station.DB); err == nil && os.SameFile(a, b) {
					return cli.Usagef("--out %s is the station database itself", o.out)
				}
			}
			info, err := station.Backup(cfg, o.out)
			if err != nil {
				return err
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), map[string]any{"db": cfg.Station.DB, "out": o.out,
					"size": info.Size, "units": info.Units, "attempts": info.Attempts, "exit_code": ExitOK, "hint": ""})
			}
			fmt.Fprintf(c.OutOrStdout(), "backed up %s to %s: %d bytes, %d units\n", cfg.Station.DB, o.out, info.Size, info.Units)
			return nil
		},
	}
	c.Flags().StringVar(&o.out, "out", "", "the backup file to write (replaced if it exists)")
	return c
}
