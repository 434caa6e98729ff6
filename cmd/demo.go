package cmd

import (
	"fmt"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

type demoOptions struct {
	units int
	out   string
}

func newDemoCommand(g *globals) *cobra.Command {
	o := &demoOptions{}
	c := &cobra.Command{
		Use:   "demo [--units N] [--out DIR]",
		Short: "Run the whole line on in-process simulated TPMs (nothing to install)",
		Long: `Runs the whole line on in-process simulated TPMs: a throwaway root → factory → line PKI,
a throwaway TPM vendor whose EK certificates go into each simulated TPM, then the real
provisioning timeline on each unit. Everything it makes stays in --out (a new temporary
folder by default) with a station.yaml to look around with.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.units < 1 || o.units > 10000 {
				return cli.Usagef("--units must be between 1 and 10000")
			}
			dir := o.out
			if dir == "" {
				d, err := os.MkdirTemp("", "station-demo-")
				if err != nil {
					return err
				}
				dir = d
			} else if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
				return cli.Usagef("--out %s is not empty: the demo makes a fresh line in an empty folder", dir)
			}
			rep, err := station.Demo(ctx(c), station.DemoOptions{
				Units: o.units, Dir: dir, Version: g.version,
				Progress: func(serial string) { g.log().Info("provisioning", "serial", serial) },
			})
			if err != nil {
				return err
			}
			failed := slices.IndexFunc(rep.Results, func(r *station.Result) bool {
				vr := rep.Verified[r.Serial]
				return r.Result != station.ResultPass || vr == nil || !vr.Passed
			}) >= 0
			if g.json() {
				for _, r := range rep.Results {
					d := demoJSON{Result: r}
					if vr := rep.Verified[r.Serial]; vr != nil {
						d.Verified = vr.Passed
					}
					if r.Result != station.ResultPass || !d.Verified {
						d.outcome = outcome{ExitFailed, fmt.Sprintf("see what failed with: station --config %s units show %s; station --config %s verify --serial %s", rep.Config, r.Serial, rep.Config, r.Serial)}
					}
					if err := cli.WriteJSON(c.OutOrStdout(), d); err != nil {
						return err
					}
				}
			} else {
				w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "SERIAL\tREGISTRATION ID\tTIME\tRESULT\tQA VERIFY")
				for _, r := range rep.Results {
					res := "PASS"
					if r.Result != station.ResultPass {
						res = "FAIL at " + r.FailedStep + ": " + r.Error
					}
					qa := "-"
					if vr := rep.Verified[r.Serial]; vr != nil {
						qa = fmt.Sprintf("%d/%d checks pass", len(vr.Checks)-len(vr.Failed()), len(vr.Checks))
					}
					fmt.Fprintf(w, "%s\t%s\t%.0f ms\t%s\t%s\n", r.Serial, r.RegistrationID, r.TotalMs, res, qa)
				}
				w.Flush()
				fmt.Fprintf(c.OutOrStdout(), "\nEverything is in %s. Look around (`make build` puts station in bin/):\n  station --config %s units list\n  station --config %s units show %s\n  station --config %s audit verify\n",
					rep.Dir, rep.Config, rep.Config, rep.Results[0].Serial, rep.Config)
			}
			if failed {
				return silentError{ExitFailed}
			}
			return nil
		},
	}
	c.Flags().IntVar(&o.units, "units", 5, "how many units to provision")
	c.Flags().StringVar(&o.out, "out", "", "folder for the demo's PKI, database and unit images (default: a new temporary folder)")
	return c
}

// demoJSON is one unit's line of `station demo -o json`: provision's result,
// whether QA's verify passed, the exit code and hint.
type demoJSON struct {
	*station.Result
	Verified bool `json:"verified"`
	outcome
}
