package cmd

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/factory-id/station/internal/buildinfo"
	"github.com/factory-id/station/internal/cli"
)

// newDocsCommand is `station docs`: the reference generated from the
// command tree itself.
func newDocsCommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "docs",
		Short: "Write station's reference documentation (man pages)",
	}
	c.AddCommand(newDocsManCommand(g))
	return c
}

type docsManOptions struct {
	out string
}

// newDocsManCommand is `station docs man --out DIR`: one man page per
// command (station.1, station-provision.1, ...), from cobra's doc generator.
func newDocsManCommand(g *globals) *cobra.Command {
	o := &docsManOptions{}
	c := &cobra.Command{
		Use:   "man --out DIR",
		Short: "Write a man page for every command into DIR (section 1)",
		Long: "Writes station.1 and one page per command (station-provision.1, station-audit-verify.1, ...)\n" +
			"into DIR, created if missing. Install them with `make man` and\n" +
			"`install -m 0644 bin/man/*.1 /usr/local/share/man/man1/`.",
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.out == "" {
				return cli.Usagef("--out DIR is required")
			}
			if err := os.MkdirAll(o.out, 0o755); err != nil {
				return cli.Usagef("--out: %v", err)
			}
			root := c.Root()
			root.DisableAutoGenTag = true // the same pages from the same tree: no date in them
			header := &doc.GenManHeader{Title: "STATION", Section: "1", Source: "station " + g.version, Manual: "station manual"}
			// The pages' date is the build's commit time, so one build
			// always writes the same pages; SOURCE_DATE_EPOCH, when set,
			// decides instead (cobra reads it), then today.
			if t := buildinfo.Read().Time; !t.IsZero() && os.Getenv("SOURCE_DATE_EPOCH") == "" {
				header.Date = &t
			}
			if err := doc.GenManTree(root, header, o.out); err != nil {
				return fmt.Errorf("writing man pages: %w", err)
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), struct {
					Dir string `json:"dir"`
					outcome
				}{o.out, outcome{}})
			}
			fmt.Fprintf(c.OutOrStdout(), "man pages written to %s\n", o.out)
			return nil
		},
	}
	c.Flags().StringVar(&o.out, "out", "", "the folder to write the pages into")
	return c
}
