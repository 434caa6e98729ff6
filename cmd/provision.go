package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/internal/ui"
	"github.com/factory-id/station/station"
)

type provisionOptions struct {
	unitFlags
	parallel int
	force    bool
}

func newProvisionCommand(g *globals) *cobra.Command {
	o := &provisionOptions{}
	c := &cobra.Command{
		Use:   "provision (--serial SN [--tpm URI] [--flash URI] | --batch FILE.csv [--parallel N])",
		Short: "Run the manufacturing timeline on a unit (resumes a unit left half-done)",
		Long: `Runs the whole manufacturing timeline on one unit: EK and its certificate, SRK, device key,
certificate, flash, ownership, record. Each step is journaled, so re-running provision on a unit
that stopped half-way resumes it, and re-running it on a finished unit changes nothing.

With --batch, FILE.csv has one row per unit: serial,tpm[,flash] (a header row and # comments
are allowed); --parallel N runs N fixtures at once.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.run(g, c) },
	}
	f := c.Flags()
	o.add(f, "flash target(s) (overrides flash.target): dir:PATH, exec:NAME, tpm-nv, comma-separated")
	f.IntVar(&o.parallel, "parallel", 1, "with --batch: how many fixtures to run at once")
	f.BoolVar(&o.force, "force", false, "overwrite a flash target that holds another unit's bundle")
	return c
}

func (o *provisionOptions) run(g *globals, c *cobra.Command) error {
	if o.parallel < 1 {
		return cli.Usagef("--parallel must be at least 1")
	}
	cfg, err := g.config()
	if err != nil {
		return err
	}
	reqs, err := o.requests(cfg)
	if err != nil {
		return err
	}
	for i := range reqs {
		reqs[i].Force = o.force
	}
	if o.parallel > 1 && usesSimulator(reqs, cfg.TPM.Address) {
		return cli.Usagef("the in-process simulator (sim) serves one unit at a time: use --parallel 1")
	}
	// With -o json every unit gets its object on stdout, even when the
	// station cannot start (the error itself goes to stderr, once).
	failAll := func(err error) error {
		if g.json() {
			for _, r := range reqs {
				cli.WriteJSON(c.OutOrStdout(), provisionJSON{Result: &station.Result{Serial: r.Serial, Result: station.ResultFail, Error: err.Error(), StepsMs: map[string]float64{}}, outcome: outcomeOf(err)})
			}
		}
		return err
	}
	env, err := station.OpenEnv(cfg, g.version)
	if err != nil {
		return failAll(err)
	}
	defer env.Close()
	prov, err := station.NewProvisioner(env, g.getenv)
	if err != nil {
		return failAll(err)
	}
	defer prov.Close()

	out, errw := c.OutOrStdout(), c.ErrOrStderr()
	scr := newUnitScreen(g, c, "provision", &o.unitFlags, reqs, o.parallel)
	var mu sync.Mutex // serializes output lines
	report := func(res *station.Result, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case g.json():
			cli.WriteJSON(out, provisionJSON{Result: res, outcome: outcomeOf(err)})
		case scr.live != nil:
			scr.done(provisionOutcome(res, err))
		default:
			printResult(out, res)
		}
		if err != nil && (o.batch != "" || scr.live != nil) && (scr.live == nil || !ui.IsTerminal(errw)) {
			Exit(err, errw) // each unit's error once, with its hint (on the screen when live)
		}
	}
	run := func(r station.Request) (*station.Result, error) {
		r.Observer = scr.obs
		scr.started(r.Serial, fixture(r, cfg.TPM.Address))
		res, err := prov.Provision(ctx(c), r)
		report(res, err)
		return res, err
	}
	if o.serial != "" {
		_, err := run(reqs[0])
		scr.close()
		if err != nil && scr.live != nil {
			return silentError{code(err)} // reported above
		}
		return err
	}
	codes, started := runBatch(c, reqs, o.parallel, run)
	for i, r := range reqs {
		if !started[i] {
			scr.done(notStarted("provision", r.Serial, o.batch))
			if scr.live == nil {
				fmt.Fprintf(errw, "station: unit %s: not started: the batch was interrupted\nhint: re-run `station provision --batch %s`\n", r.Serial, o.batch)
			}
		}
	}
	scr.close()
	if scr.live != nil {
		return batchCode(codes)
	}
	return batchExit(codes, serialsOf(reqs), errw)
}

// provisionOutcome is a unit's result as the live screen shows it.
func provisionOutcome(res *station.Result, err error) ui.Outcome {
	o := ui.Outcome{Serial: res.Serial, Elapsed: msDuration(res.TotalMs), Step: res.FailedStep}
	switch {
	case err == nil && res.Result == station.ResultAlready:
		o.Verdict, o.Detail = ui.Pass, "already provisioned: nothing changed · registration ID "+res.RegistrationID
	case err == nil:
		o.Verdict, o.Detail = ui.Pass, "registration ID "+res.RegistrationID
		if res.Resumed {
			o.Detail += " · resumed"
		}
	case errors.Is(err, context.Canceled):
		o.Verdict, o.Detail, o.Hint = ui.Interrupted, err.Error(), hint.Of(err)
	default:
		o.Verdict, o.Detail, o.Hint = ui.Fail, err.Error(), hint.Of(err)
	}
	return o
}

// provisionJSON is one unit's object of `station provision -o json` and
// `station line -o json`: its result, exit code and hint.
type provisionJSON struct {
	*station.Result
	outcome
}

func printResult(w io.Writer, r *station.Result) {
	switch r.Result {
	case station.ResultPass:
		fmt.Fprintf(w, "PASS  %s  %s  %.0f ms", r.Serial, r.RegistrationID, r.TotalMs)
		if r.Resumed {
			fmt.Fprint(w, "  (resumed)")
		}
		fmt.Fprintln(w)
	case station.ResultAlready:
		fmt.Fprintf(w, "PASS  %s  %s  already provisioned: nothing changed\n", r.Serial, r.RegistrationID)
	default:
		if r.FailedStep == "" {
			fmt.Fprintf(w, "FAIL  %s  before any step\n", r.Serial)
			return
		}
		fmt.Fprintf(w, "FAIL  %s  at step %s\n", r.Serial, r.FailedStep)
	}
}

// serialsOf returns the requests' serials, in order.
func serialsOf(reqs []station.Request) []string {
	s := make([]string, len(reqs))
	for i, r := range reqs {
		s[i] = r.Serial
	}
	return s
}

func usesSimulator(reqs []station.Request, def string) bool {
	for _, r := range reqs {
		a := r.TPMAddr
		if a == "" {
			a = def
		}
		if a == "sim" || strings.HasPrefix(a, "sim:") {
			return true
		}
	}
	return false
}

// runBatch runs reqs on n workers and returns each unit's exit code, and
// whether it was started: once the command is interrupted, no new unit is.
func runBatch[T any](c *cobra.Command, reqs []station.Request, n int, run func(station.Request) (T, error)) (codes []int, started []bool) {
	codes, started = make([]int, len(reqs)), make([]bool, len(reqs))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if ctx(c).Err() != nil {
					codes[i] = ExitFailed // interrupted before its turn
					continue
				}
				started[i] = true
				_, err := run(reqs[i])
				codes[i] = code(err)
			}
		}()
	}
	for i := range reqs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return codes, started
}

// batchExit summarizes a batch: the tally, naming the failed units in
// the batch's order (serials[i] is unit i's), on w; exit 0 when every unit
// passed; otherwise the failures' common exit code, or 1 when they differ.
func batchExit(codes []int, serials []string, w io.Writer) error {
	var failed []string
	for i, c := range codes {
		if c != ExitOK {
			failed = append(failed, serials[i])
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed", len(codes)-len(failed), len(failed))
	if len(failed) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(failed, ", "))
	}
	fmt.Fprintln(w)
	return batchCode(codes)
}

// batchCode is a batch's exit: 0 when every unit passed; otherwise the
// failures' common exit code, or 1 when they differ (already reported).
func batchCode(codes []int) error {
	common := -1
	for _, c := range codes {
		switch {
		case c == ExitOK:
		case common == -1:
			common = c
		case common != c:
			common = ExitFailed
		}
	}
	if common == -1 {
		return nil
	}
	return silentError{common}
}
