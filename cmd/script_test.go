package cmd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/factory-id/station/internal/auditcli"
	"github.com/factory-id/station/internal/ptytest"
	"github.com/factory-id/station/internal/softhsmtest"
)

// scriptCommands are programs on the scripts' $PATH: the station root
// command as "station" (this test binary, run as a real process, so exit
// codes, stdout and stderr are what an operator sees), plus fixtures other
// test files add in their init (audit-fixture).
var scriptCommands = map[string]func(){
	"station": func() { // as cmd/station's main: Ctrl-C and SIGTERM cancel the context
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Run(ctx, "test", os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	},
	// station-audit, the auditor's verifier (cmd/station-audit's main).
	"station-audit": func() { os.Exit(auditcli.Exit(auditcli.NewRootCommand("test").Execute(), os.Stderr)) },
	// pty DIALOG PROGRAM ARGS... runs PROGRAM on a pseudo-terminal, waiting
	// for each prompt before typing (see ptytest.Run).
	"pty": func() { os.Exit(ptytest.Run(os.Args[1:], os.Stdout, os.Stderr)) },
}

// scriptCmds are in-process script commands; test files add fixtures
// (genkey, seed...) in their init.
var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// status CODE PROGRAM ARGS... runs the program and requires exit status
	// CODE (stdout and stderr are kept for later checks).
	"status": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) < 2 {
			ts.Fatalf("usage: status CODE program args...")
		}
		want, err := strconv.Atoi(args[0])
		if err != nil {
			ts.Fatalf("status: bad code %q", args[0])
		}
		err = ts.Exec(args[1], args[2:]...)
		got := 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			got = ee.ExitCode()
		case err != nil:
			ts.Fatalf("status: %v", err)
		}
		if got != want {
			ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
		}
	},
}

func TestMain(m *testing.M) {
	testscript.Main(m, scriptCommands)
}

// stationExe is the station program testscript.Main put on $PATH, for
// tests that run (and kill) it directly.
func stationExe(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("station")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestScripts runs every testdata/*/*.txtar: whole command lines, failures
// included. Condition [softhsm]: SoftHSM2 is installed; each script then has
// a token (label "station", PIN in $WORK/hsm/pin) and $HSM, the start of a
// pkcs11: URI naming it (append ;id=%NN;object=NAME?pin-source=$WORK/hsm/pin).
// $STATIONBIN names the station program (for scripts that need a terminal;
// not STATION_*, which station would refuse as a misspelt config override).
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	hsm := softhsmtest.Available() == nil
	if !hsm && os.Getenv("CI") == "true" {
		t.Fatal(softhsmtest.ErrMissing)
	}
	testscript.Run(t, testscript.Params{
		Files: files,
		Setup: func(e *testscript.Env) error {
			// No configuration from the developer's environment.
			e.Setenv("STATION_CONFIG", "")
			e.Setenv("STATIONBIN", "station")
			if !hsm {
				return nil
			}
			dir := filepath.Join(e.WorkDir, "hsm")
			tk, err := softhsmtest.Create(dir, "station", "pin-3141-5926", "so-pin-2718")
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "pin"), []byte(tk.PIN+"\n"), 0o600); err != nil {
				return err
			}
			e.Setenv("SOFTHSM2_CONF", tk.Conf)
			e.Setenv("HSM", "pkcs11:module-path="+softhsmtest.Module+";token="+tk.Label)
			e.Setenv("HSM_PIN", tk.PIN)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "softhsm" {
				return hsm, nil
			}
			return false, errors.New("unknown condition " + cond)
		},
		Cmds: scriptCmds,
	})
}
