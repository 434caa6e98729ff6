package cmd

import (
	"crypto"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/station"
)

type enrollMergeOptions struct {
	out  string
	keys []string
}

func newEnrollMergeCommand(g *globals) *cobra.Command {
	o := &enrollMergeOptions{}
	c := &cobra.Command{
		Use:   "merge DIR... --out DIR --key PUB.pem [--key PUB.pem...]",
		Short: "Combine many stations' exports into one, reporting units seen at more than one station",
		Long: `Verify every export against the trusted station keys (--key, one per station,
and this station's own key; each export must be signed by one of them), report registration IDs, EKs,
serials and certificates found at more than one station (clones), and write one
combined dps-bulk export signed by this station's key, with duplicates.json.
Enabled enrollments involved in a duplicate are left out of the combined export;
disabled ones are kept. Exit 3 when duplicates were found (the export is still
written), 4 when an input does not verify.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if o.out == "" {
				return cli.Usagef("--out is required")
			}
			var trusted []crypto.PublicKey
			if own, err := ownStationKey(g); err == nil {
				trusted = append(trusted, own)
			} else if len(o.keys) == 0 {
				return err
			}
			for _, k := range o.keys {
				pub, err := cli.ReadKey("--key", k, audit.ParsePublicKeyPEM)
				if err != nil {
					return err
				}
				trusted = append(trusted, pub)
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			signer, closeKey, err := station.OpenSigningKey(cfg)
			if err != nil {
				return err
			}
			defer closeKey()
			rep, err := enroll.Merge(enroll.MergeOptions{Dirs: args, Trusted: trusted, Out: o.out, Signer: signer, StationID: cfg.Station.ID})
			if err != nil {
				return err
			}
			var dupErr error
			if len(rep.Duplicates) > 0 {
				dupErr = hint.Wrap(fmt.Errorf("%w: %d identities at more than one station", enroll.ErrDuplicates, len(rep.Duplicates)),
					"investigate the units listed (clones or units provisioned twice); the combined export holds everything else, see duplicates.json")
			}
			w := c.OutOrStdout()
			if g.json() {
				if err := cli.WriteJSON(w, struct {
					*enroll.MergeReport
					outcome
				}{rep, outcomeOf(dupErr)}); err != nil {
					return err
				}
			} else {
				for _, s := range rep.Sources {
					fmt.Fprintf(w, "station %s: %s merged (manifest %.16s…)\n", s.StationID, cli.Plural(s.Enrollments, "enrollment"), s.ManifestSHA256)
				}
				for _, d := range rep.Duplicates {
					fmt.Fprintf(w, "DUPLICATE %s %s:\n", d.Kind, d.Value)
					for _, x := range d.Occurrences {
						state := "enabled"
						if x.Disabled {
							state = "disabled"
						}
						fmt.Fprintf(w, "  station %s serial %s registration %s (%s) in %s\n", x.StationID, enrollOrDash(x.Serial), x.RegistrationID, state, x.Export)
					}
				}
				fmt.Fprintf(w, "wrote %s in %s to %s; %s left out\n", cli.Plural(rep.Manifest.Counts.Enrolled, "enrollment"),
					cli.Plural(len(rep.Manifest.Files), "file"), rep.Out, cli.Plural(rep.Excluded, "duplicated enrollment"))
			}
			return dupErr
		},
	}
	c.Flags().StringVar(&o.out, "out", "", "folder for the combined export")
	c.Flags().StringArrayVar(&o.keys, "key", nil, "a trusted station public key (PEM); repeat for each station")
	return c
}
