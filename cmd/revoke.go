package cmd

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

type revokeOptions struct {
	serial, caCert, reason string
}

func newRevokeCommand(g *globals) *cobra.Command {
	o := &revokeOptions{}
	c := &cobra.Command{
		Use:   "revoke --serial SN | --ca-cert F --reason TEXT",
		Short: "Mark a unit, or an intermediate and every unit under it, compromised",
		Long: `Mark a unit compromised (--serial), or an intermediate (--ca-cert, PEM or DER):
later exports write its units' enrollments disabled, and dps-group writes a
disabled enrollment group on the intermediate. Every unit under the
intermediate is listed. Recorded in the audit log.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if (o.serial == "") == (o.caCert == "") {
				return cli.Usagef("give exactly one of --serial or --ca-cert")
			}
			if o.reason == "" {
				o.reason = "no reason given" // recorded as such; --reason is for the auditor
			}
			ro := station.RevokeOptions{Serial: o.serial, Reason: o.reason}
			if o.caCert != "" {
				b, err := os.ReadFile(o.caCert)
				if err != nil {
					return cli.Usagef("--ca-cert: %v", err)
				}
				if ro.CA, err = enroll.ParseCACert(b); err != nil {
					return cli.Usage(fmt.Errorf("--ca-cert %s: %w", o.caCert, err))
				}
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			ro.Operator = cfg.Station.Operator
			env, err := station.OpenEnv(cfg, g.version)
			if err != nil {
				return err
			}
			defer env.Close()
			res, err := station.Revoke(env, ro)
			if err != nil {
				return err
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), struct {
					*station.RevokeResult
					outcome
				}{RevokeResult: res})
			}
			w := c.OutOrStdout()
			switch {
			case res.CA != nil:
				if res.CA.Already {
					fmt.Fprintf(w, "intermediate %s was already revoked; its first revocation stands\n", res.CA.Subject)
				}
				fmt.Fprintf(w, "revoked intermediate %s (sha256 %s); enrollment group %s will be exported disabled\n", res.CA.Subject, res.CA.SHA256, res.CA.GroupID)
				fmt.Fprintf(w, "%s under it (%d newly revoked):\n", cli.Plural(len(res.CA.Units), "unit"), len(res.CA.Newly))
				for _, s := range res.CA.Units {
					fmt.Fprintf(w, "  %s\n", s)
				}
			case res.Already:
				fmt.Fprintf(w, "unit %s was already revoked; its first revocation stands\n", res.Serial)
			default:
				fmt.Fprintf(w, "revoked unit %s; the next export disables its enrollment\n", res.Serial)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.serial, "serial", "", "the unit's serial")
	f.StringVar(&o.caCert, "ca-cert", "", "the compromised intermediate's certificate (PEM or DER)")
	f.StringVar(&o.reason, "reason", "", "why (recorded in the audit log; strongly advised)")
	return c
}
