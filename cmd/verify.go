package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/internal/ui"
	"github.com/factory-id/station/station"
)

type verifyOptions struct {
	unitFlags
}

func newVerifyCommand(g *globals) *cobra.Command {
	o := &verifyOptions{}
	c := &cobra.Command{
		Use:   "verify (--serial SN [--tpm URI] [--flash URI] | --batch FILE.csv)",
		Short: "QA: re-prove everything on a finished unit, without changing it",
		Long: `Re-proves everything on a provisioned unit and reports each check by name:
record, ek, ek-cert, srk, ownership, device-key, certificate, flash, dps-attestation, no-leaks.

dps-attestation plays the DPS service: it sends the unit's TPM the challenge DPS would (a
credential for the recorded EK and the SRK, and an HMAC key duplicated to the SRK), and the TPM
activates, imports and persists it at 0x81000100 as the DPS SDKs do, then signs a SAS token.
The key is removed afterwards; nothing else on the unit is written.

Every result is recorded in the audit log. Exit 0 only when every check passed, 1 otherwise.
With --batch, FILE.csv has one row per unit: serial,tpm[,flash] (as for provision).`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.run(g, c) },
	}
	f := c.Flags()
	o.add(f, "flash target(s) to read back (default: the ones recorded at provisioning)")
	return c
}

func (o *verifyOptions) run(g *globals, c *cobra.Command) error {
	cfg, err := g.config()
	if err != nil {
		return err
	}
	reqs, err := o.requests(cfg)
	if err != nil {
		return err
	}
	if cfg.DPS.Attestation == enroll.AttestTPM {
		// dps-attestation signs the ID scope into the SAS token.
		if err := cfg.CheckIDScope(); err != nil {
			return err
		}
	}
	env, err := station.OpenEnv(cfg, g.version)
	if err != nil {
		return err
	}
	defer env.Close()

	out, errw := c.OutOrStdout(), c.ErrOrStderr()
	scr := newUnitScreen(g, c, "verify", &o.unitFlags, reqs, 1)
	live := scr.live != nil
	codes := make([]int, 0, len(reqs))
	var failed []string
	for _, r := range reqs {
		if ctx(c).Err() != nil {
			codes = append(codes, ExitFailed)
			failed = append(failed, r.Serial)
			scr.done(notStarted("verify", r.Serial, o.batch))
			continue
		}
		if !live {
			g.log().Info("verifying", "serial", r.Serial)
		}
		scr.started(r.Serial, fixture(r, cfg.TPM.Address))
		t0 := time.Now()
		rep, err := station.Verify(ctx(c), env, station.VerifyRequest{
			Serial: r.Serial, TPM: r.TPMAddr, Flash: r.FlashSpec, Operator: env.Operator(), Observer: scr.obs,
		})
		if rep == nil && err != nil && g.json() {
			// One object per unit on stdout, whatever happened to it.
			rep = &station.VerifyReport{Serial: r.Serial, Checks: []station.Check{}, Error: err.Error()}
		}
		switch {
		case live:
			scr.done(verifyOutcome(c, r.Serial, rep, err, time.Since(t0)))
		case rep == nil:
		case g.json():
			o := outcomeOf(err)
			if errors.Is(err, station.ErrVerifyFailed) {
				o.ExitCode = ExitFailed // the report says it all
			}
			if werr := cli.WriteJSON(out, verifyJSON{VerifyReport: rep, outcome: o}); werr != nil {
				scr.close()
				return werr
			}
		default:
			printVerify(out, rep)
		}
		if err == nil {
			codes = append(codes, ExitOK)
			continue
		}
		failed = append(failed, r.Serial)
		if rep != nil && errors.Is(err, station.ErrVerifyFailed) {
			codes = append(codes, ExitFailed) // the report says it all
			continue
		}
		codes = append(codes, code(err))
		if o.batch == "" && !live {
			scr.close()
			return err // printed once by Exit, with its exit code
		}
		if !live || !ui.IsTerminal(errw) {
			Exit(err, errw) // this unit's error once, with its hint
		}
	}
	scr.close()
	if o.batch == "" {
		if codes[0] != ExitOK {
			return silentError{codes[0]}
		}
		return nil
	}
	if live {
		return batchCode(codes)
	}
	if !g.json() {
		fmt.Fprintf(out, "verified %d units: %d passed, %d failed", len(reqs), len(reqs)-len(failed), len(failed))
		if len(failed) > 0 {
			fmt.Fprintf(out, " (%s)", strings.Join(failed, ", "))
		}
		fmt.Fprintln(out)
	}
	return batchExit(codes, serialsOf(reqs), errw)
}

// printVerify writes one line per check, then the unit's verdict.
func printVerify(w io.Writer, r *station.VerifyReport) {
	width := 0
	for _, ch := range r.Checks {
		width = max(width, len(ch.Name))
	}
	for _, ch := range r.Checks {
		verdict := "PASS"
		if !ch.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%s  %-*s  %s\n", verdict, width, ch.Name, ch.Detail)
	}
	for _, note := range r.Cleanup {
		fmt.Fprintf(w, "note: %s\n", note)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "unit %s: %s\n", r.Serial, r.Error)
	}
	passed := len(r.Checks) - len(r.Failed())
	if r.Passed {
		fmt.Fprintf(w, "unit %s: PASS (%d/%d checks)\n", r.Serial, passed, len(r.Checks))
	} else {
		fmt.Fprintf(w, "unit %s: FAIL (%d/%d checks; failed: %s)\n", r.Serial, passed, len(r.Checks), strings.Join(r.Failed(), ", "))
	}
}

// verifyOutcome is a unit's verify as the live screen shows it.
func verifyOutcome(c *cobra.Command, serial string, rep *station.VerifyReport, err error, d time.Duration) ui.Outcome {
	o := ui.Outcome{Serial: serial, Elapsed: d}
	switch {
	case err == nil:
		o.Verdict, o.Detail = ui.Pass, fmt.Sprintf("%d/%d checks passed", len(rep.Checks), len(rep.Checks))
	case ctx(c).Err() != nil:
		o.Verdict, o.Detail, o.Hint = ui.Interrupted, err.Error(), station.InterruptedHint("verify", serial)
	default:
		o.Verdict, o.Detail, o.Hint = ui.Fail, err.Error(), hint.Of(err)
		if rep != nil && len(rep.Failed()) > 0 {
			o.Step = rep.Failed()[0]
			for _, ch := range rep.Checks {
				if !ch.Passed {
					o.Detail = fmt.Sprintf("%d/%d checks passed; %s: %s", len(rep.Checks)-len(rep.Failed()), len(rep.Checks), ch.Name, ch.Detail)
					break
				}
			}
		}
		if o.Hint == "" {
			o.Hint = station.VerifyFailedHint(serial)
		}
	}
	return o
}

// verifyJSON is one unit's object of `station verify -o json`: its checks,
// exit code and hint.
type verifyJSON struct {
	*station.VerifyReport
	outcome
}
