package cmd

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

type enrollExportOptions struct {
	format, out    string
	since, until   string
	status         string
	serials        []string
	onlyNew        bool
	includeSecrets bool
	encryptTo      string
}

func newEnrollExportCommand(g *globals) *cobra.Command {
	o := &enrollExportOptions{}
	c := &cobra.Command{
		Use:   "export --format dps-bulk|dps-individual|dps-group|csv --out PATH",
		Short: "Write the units' DPS enrollments (signed, deterministic, incremental with --only-new)",
		Long: `Write the units' enrollments as DPS accepts them:
  dps-bulk        folder of NNNN.json bulk operations (at most 10 each) + signed manifest.json
  dps-individual  folder of <registrationId>.json IndividualEnrollments + signed manifest.json
  dps-group       folder of EnrollmentGroups: the line intermediate, and disabled groups for revoked ones
  csv             one file, a row per unit
Revoked units are written provisioningStatus disabled (mode update once exported).
The same database gives the same bytes; --only-new writes only what changed since
the last export in that format. Symmetric-key derived keys are written only with
--include-secrets, encrypted to --encrypt-to.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !slices.Contains(enroll.Formats, o.format) {
				return cli.Usagef("--format %q: want one of %s", o.format, strings.Join(enroll.Formats, ", "))
			}
			if o.out == "" {
				return cli.Usagef("--out is required")
			}
			if o.includeSecrets != (o.encryptTo != "") {
				return cli.Usagef("--include-secrets and --encrypt-to PUB.pem go together: secrets are only written encrypted")
			}
			if o.includeSecrets && o.format == enroll.FormatCSV {
				return cli.Usagef("--include-secrets: csv never carries secrets")
			}
			switch o.status {
			case "", "all":
				o.status = ""
			case "provisioned", "revoked":
			default:
				return cli.Usagef("--status %q: want provisioned, revoked or all", o.status)
			}
			since, err := enrollParseTime("--since", o.since)
			if err != nil {
				return err
			}
			until, err := enrollParseTime("--until", o.until)
			if err != nil {
				return err
			}
			if !since.IsZero() && !until.IsZero() && !since.Before(until) {
				return cli.Usagef("--since must be before --until")
			}
			so := station.ExportOptions{
				Format: o.format, Out: o.out, OnlyNew: o.onlyNew, IncludeSecrets: o.includeSecrets,
				Filter: enroll.Filter{Since: since, Until: until, Status: o.status, Serials: o.serials},
				Getenv: g.getenv,
			}
			if o.encryptTo != "" {
				if so.EncryptTo, err = cli.ReadKey("--encrypt-to", o.encryptTo, enroll.ParseRecipientKeyPEM); err != nil {
					return err
				}
				switch so.EncryptTo.(type) {
				case *ecdsa.PublicKey, *rsa.PublicKey:
				default:
					return cli.Usagef("--encrypt-to %s: a %T cannot be encrypted to; give an EC or RSA public key", o.encryptTo, so.EncryptTo)
				}
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			so.Operator = cfg.Station.Operator
			env, err := station.OpenEnv(cfg, g.version)
			if err != nil {
				return err
			}
			defer env.Close()
			res, err := station.Export(env, so)
			if err != nil {
				return err
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), struct {
					*station.ExportResult
					outcome
				}{ExportResult: res})
			}
			w := c.OutOrStdout()
			if res.Counts == nil {
				fmt.Fprintf(w, "wrote %s to %s\n", cli.Plural(res.Rows, "unit row"), res.Out)
				return nil
			}
			k := res.Counts
			what := cli.Plural(k.Enrolled, "enrollment")
			if o.format == enroll.FormatGroup {
				what = cli.Plural(k.Groups, "enrollment group")
			}
			fmt.Fprintf(w, "exported %s in %s to %s (%s)\n", what, cli.Plural(res.Files, "file"), res.Out,
				enrollJoin(enrollCount(k.Create, "create"), enrollCount(k.Update, "update"), enrollCount(k.Disabled, "disabled"),
					enrollCount(k.Unchanged, "unchanged"), enrollCount(k.ViaGroup, "symmetric-key via group")))
			fmt.Fprintf(w, "manifest sha256 %s, signed by the station key\n", res.ManifestSHA256)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.format, "format", "", "dps-bulk, dps-individual, dps-group or csv")
	f.StringVar(&o.out, "out", "", "output folder (a file for csv)")
	f.StringVar(&o.since, "since", "", "only units provisioned at or after this time (RFC 3339 or YYYY-MM-DD)")
	f.StringVar(&o.until, "until", "", "only units provisioned before this time")
	f.StringVar(&o.status, "status", "", "provisioned, revoked or all (default all)")
	f.StringSliceVar(&o.serials, "serial", nil, "only these serials (repeat or comma-separate)")
	f.BoolVar(&o.onlyNew, "only-new", false, "only what changed since the last export in this format")
	f.BoolVar(&o.includeSecrets, "include-secrets", false, "write symmetric-key units' derived keys (needs --encrypt-to)")
	f.StringVar(&o.encryptTo, "encrypt-to", "", "PEM public key (EC or RSA) the secret files are encrypted to")
	return c
}

func enrollCount(n int, label string) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d %s", n, label)
}
