package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/ui"
	"github.com/factory-id/station/station"
)

type lineOptions struct {
	flash string
	force bool
}

// newLineCommand is `station line`: a shift-long session fed by a barcode
// scanner.
func newLineCommand(g *globals) *cobra.Command {
	o := &lineOptions{}
	c := &cobra.Command{
		Use:   "line [--flash LIST] [--force]",
		Short: "A shift-long session: unlock once, then provision each scanned SERIAL[,FIXTURE] on a free fixture",
		Long: `Runs a standalone station for a shift. It opens the line key once (STATION_PKI_KEY_PASSWORD,
else asked on the terminal; or station agent when agent.sock is set), runs the doctor checks
(refusing to start on a failed one; an unreachable fixture TPM is only a warning, as fixtures may be
empty), then reads one line per unit from standard input, as a barcode scanner (a keyboard wedge)
types them:

  SERIAL            the unit goes on the next free fixture
  SERIAL,FIXTURE    on that fixture: a name or TPM address from line.fixtures

Each unit is provisioned exactly as station provision does it (same database, journal, audit log
and checks) while the next line is read; as many units run at once as there are fixtures
(line.fixtures, else tpm.address alone). A serial already provisioned is reported as such without
touching a fixture; a bad line is reported and the session goes on.

Output: on a terminal, the operator's live screen: a row per unit waiting for or on its fixture
(its step, a spinner, the time, the steps done), the last unit's large PASS or FAIL with the one
thing to do, a running tally (done, failed, units/hour) and a summary at the end; the scanner keeps
standard input (the screen reads none, and the terminal does not echo scans into it). With
NO_COLOR or TERM=dumb: plain lines. When stdout is not a terminal (or with -o json): JSON lines,
one object per line read, as station provision -o json writes them. The session ends at the end
of input (Ctrl-D on a terminal), or on SIGTERM or Ctrl-C: no new unit starts, units on fixtures
stop at their next step boundary, journaled, and how to resume them is shown (a second Ctrl-C
stops at once; the units resume all the same). Exit 0 when every unit passed, else the failures'
common code, or 1.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.run(g, c) },
	}
	f := c.Flags()
	f.StringVar(&o.flash, "flash", "", "flash target(s) for every unit (overrides line.fixtures' and flash.target)")
	f.BoolVar(&o.force, "force", false, "overwrite a flash target that holds another unit's bundle")
	return c
}

func (o *lineOptions) run(g *globals, c *cobra.Command) error {
	cfg, err := g.config()
	if err != nil {
		return err
	}
	if o.flash != "" {
		if err := cfg.CheckTargets(o.flash); err != nil {
			return err
		}
	}
	fixtures := cfg.LineFixtures()
	if len(fixtures) > 1 {
		for _, f := range fixtures {
			if f.TPM == "sim" || strings.HasPrefix(f.TPM, "sim:") {
				return cli.Usagef("line.fixtures: the in-process simulator (sim) serves one unit at a time: use swtpm fixtures")
			}
		}
	}
	errw := c.ErrOrStderr()

	// The line key, once: asked before the slow work, never printed.
	getenv := g.getenv
	if cfg.Agent.Sock == "" {
		pw := newPasswords(c, g)
		password, err := pw.lineKey(cfg)
		pw.close()
		if err != nil {
			return err
		}
		if password != nil {
			b, _ := password()
			secret := string(b)
			clear(b)
			getenv = func(name string) string {
				if name == configs.EnvPKIKeyPassword {
					return secret
				}
				return g.getenv(name)
			}
		}
	}

	file, _ := g.configSource()
	if _, serr := os.Stat(file); serr != nil {
		file = ""
	}
	checks := station.Doctor(cfg, nil, station.DoctorOptions{ConfigFile: file, Getenv: getenv, EmptyFixturesOK: true})
	var shown []station.DoctorCheck
	for _, ch := range checks {
		if ch.Status != station.CheckPass {
			shown = append(shown, ch)
		}
	}
	if len(shown) > 0 {
		writeDoctorText(errw, shown)
	}
	if doctorCode(checks) != ExitOK {
		fmt.Fprintln(errw, "station: line: the doctor checks above failed: fix them (station doctor) before the shift")
		return silentError{ExitFailed}
	}

	env, err := station.OpenEnv(cfg, g.version)
	if err != nil {
		return err
	}
	defer env.Close()
	prov, err := station.NewProvisioner(env, getenv)
	if err != nil {
		return err
	}
	defer prov.Close()

	sctx, stop := signal.NotifyContext(ctx(c), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-sctx.Done()
		stop() // a second signal ends the process at once
	}()

	var names []string
	for _, f := range fixtures {
		names = append(names, f.Name)
	}
	view := newLineView(sctx, g, c, o.flash, fmt.Sprintf("station line: %d fixture(s) (%s); scan SERIAL[,FIXTURE], one per line; Ctrl-C or end of input to stop\n",
		len(fixtures), strings.Join(names, ", ")))
	var (
		codes   []int
		serials []string // each unit's, for the tally
		stopped []station.LineUnit
	)
	opts := station.LineOptions{Fixtures: fixtures, FlashSpec: o.flash, Force: o.force, Observer: view.observer(),
		Scanned: view.scanned, Started: view.started}
	fatal := prov.RunLine(sctx, c.InOrStdin(), opts, func(u station.LineUnit) {
		code := code(u.Err)
		codes = append(codes, code)
		serials = append(serials, scanName(u.Scan))
		view.unit(u, code)
		if u.Stopped {
			stopped = append(stopped, u)
		}
	})
	live := view.close()
	writeResume(errw, stopped, o.flash)
	if live {
		err = batchCode(codes) // the tally is the screen's
	} else {
		err = batchExit(codes, serials, errw)
	}
	if fatal != nil {
		return fatal
	}
	return err
}

// scanName names a scanned unit in the tally: its serial, or its input line
// when the line held none.
func scanName(s station.Scan) string {
	if s.Serial != "" {
		return s.Serial
	}
	return fmt.Sprintf("line %d", s.Line)
}

// writeResume says how to finish the units the stop interrupted.
func writeResume(w io.Writer, stopped []station.LineUnit, flash string) {
	if len(stopped) == 0 {
		return
	}
	fmt.Fprintf(w, "station line stopped with %d unit(s) unfinished; each resumes where it stopped:\n", len(stopped))
	for _, u := range stopped {
		if u.Fixture.TPM == "" {
			fmt.Fprintf(w, "  %s: %s\n", u.Scan.Serial, resumeHint(u, flash))
			continue
		}
		fmt.Fprintf(w, "  %s on fixture %s: %s\n", u.Scan.Serial, u.Fixture.Name, resumeHint(u, flash))
	}
}

// resumeHint is how to finish one unit a stop interrupted.
func resumeHint(u station.LineUnit, flash string) string {
	if u.Fixture.TPM == "" {
		return "not started: scan it again"
	}
	cmd := fmt.Sprintf("station provision --serial %s --tpm %s", u.Scan.Serial, u.Fixture.TPM)
	if f := firstNonEmpty(flash, u.Fixture.Flash); f != "" {
		cmd += " --flash " + f
	}
	return fmt.Sprintf("scan it again in station line, or run `%s`", cmd)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// lineView shows a session's units: the operator's live screen
// (internal/ui) on a terminal that allows it; else JSON lines when stdout
// is not a terminal (or with -o json), plain lines on a terminal with
// NO_COLOR or TERM=dumb (each error once on stderr, with its hint).
type lineView struct {
	g     *globals
	c     *cobra.Command
	out   io.Writer
	json  bool
	flash string
	live  *ui.Screen // nil: lines
	quit  chan struct{}
	echo  func() // restores the terminal's echo
}

// newLineView prints prompt (on stderr) once the view is ready for scans.
func newLineView(stopped context.Context, g *globals, c *cobra.Command, flash, prompt string) *lineView {
	v := &lineView{g: g, c: c, out: c.OutOrStdout(), flash: flash, quit: make(chan struct{}), echo: func() {}}
	if g.json() || !ui.IsTerminal(v.out) {
		v.json = true
		fmt.Fprint(c.ErrOrStderr(), prompt)
		return v
	}
	if !ui.Live(v.out, g.getenv) {
		fmt.Fprint(c.ErrOrStderr(), prompt)
		return v
	}
	// The scanner types into standard input: the screen takes no input
	// (ui.Start), and the terminal's echo is off so that a scanned line
	// does not break into the live rows (the screen shows it instead).
	// Echo goes off before the prompt, so that a line scanned as soon as
	// the prompt shows is not echoed either.
	if f, ok := c.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if restore, err := echoOff(int(f.Fd())); err == nil {
			v.echo = sync.OnceFunc(restore)
		}
	}
	fmt.Fprint(c.ErrOrStderr(), prompt)
	v.live = ui.Start(v.out, ui.Options{Command: "provision", Session: true,
		ResumeUnit: "scan each again in station line, or run the command below"})
	go func() {
		select {
		case <-stopped.Done():
			// No scan is read from here on; a second Ctrl-C kills the
			// process, which must not leave the terminal without echo.
			v.echo()
			v.live.Stopping()
		case <-v.quit:
		}
	}()
	return v
}

// observer hears the units' steps.
func (v *lineView) observer() station.Observer {
	if v.live != nil {
		return v.live
	}
	return station.ObserverFuncs{
		Started: func(serial, step string) { v.g.log().Info("step", "serial", serial, "step", step) },
		Noted:   func(serial, text string) { v.g.log().Info(text, "serial", serial) },
	}
}

// scanned shows a line read, waiting for a fixture.
func (v *lineView) scanned(sc station.Scan) {
	if v.live != nil {
		v.live.UnitStarted(sc.Serial, "")
	}
}

// started shows a unit going on its fixture.
func (v *lineView) started(f configs.Fixture, serial string) {
	if v.live != nil {
		v.live.UnitStarted(serial, f.Name)
	} else {
		v.g.log().Info("on fixture", "fixture", f.Name, "serial", serial)
	}
}

// unit shows a unit's outcome.
func (v *lineView) unit(u station.LineUnit, exitCode int) {
	errw := v.c.ErrOrStderr()
	switch {
	case v.json:
		o := outcomeOf(u.Err)
		o.ExitCode = exitCode
		cli.WriteJSON(v.out, provisionJSON{Result: u.Result, outcome: o})
	case v.live != nil:
		o := provisionOutcome(u.Result, u.Err)
		if u.Stopped {
			o.Verdict, o.Hint = ui.Interrupted, resumeHint(u, v.flash)
			if u.Fixture.TPM == "" {
				o.Verdict = ui.NotStarted
			}
		}
		v.live.UnitDone(o)
		if u.Err != nil && !ui.IsTerminal(errw) {
			Exit(u.Err, errw)
		}
		return
	default:
		if u.Fixture.Name != "" {
			fmt.Fprintf(v.out, "[%s] ", u.Fixture.Name)
		}
		printResult(v.out, u.Result)
	}
	if u.Err != nil {
		Exit(u.Err, errw)
	}
}

// close ends the live screen, leaving its summary, and says whether there
// was one.
func (v *lineView) close() bool {
	close(v.quit)
	if v.live == nil {
		return false
	}
	v.live.Close()
	v.echo()
	return true
}
