package cmd

import (
	"crypto"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/cli"
)

type enrollVerifyOptions struct {
	key string
}

func newEnrollVerifyExportCommand(g *globals) *cobra.Command {
	o := &enrollVerifyOptions{}
	c := &cobra.Command{
		Use:   "verify-export DIR --key PUB.pem",
		Short: "Check a signed export: signature, every file's hash, nothing missing or added",
		Long: `Check an export folder against the station public key given with --key (and
only that key; without --key, this station's own key): manifest.sig over manifest.json, then every file's size and
SHA-256, that no listed file is missing and no other file was added, and that
each bulk operation holds 1 to 10 enrollments in the manifest's mode.
Exit 4 when anything does not verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if fi, err := os.Stat(args[0]); err != nil || !fi.IsDir() {
				return cli.Usagef("%s is not an export folder", args[0])
			}
			var pub crypto.PublicKey
			var err error
			if o.key == "" {
				pub, err = ownStationKey(g)
			} else {
				pub, err = cli.ReadKey("--key", o.key, audit.ParsePublicKeyPEM)
			}
			if err != nil {
				return err
			}
			m, err := enroll.VerifyExport(args[0], pub)
			if err != nil {
				return err
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), struct {
					Dir      string           `json:"dir"`
					Verified bool             `json:"verified"`
					Manifest *enroll.Manifest `json:"manifest"`
					outcome
				}{args[0], true, m, outcome{}})
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: verified: %s export of station %s, %s in %s (as of %s)\n",
				args[0], m.Format, m.StationID, cli.Plural(m.Counts.Enrolled+m.Counts.Groups, "enrollment"),
				cli.Plural(len(m.Files), "file"), enrollOrDash(m.AsOf))
			return nil
		},
	}
	c.Flags().StringVar(&o.key, "key", "", "the exporting station's public key (PEM), the only key trusted (default: this station's)")
	return c
}

func enrollOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
