package cmd

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// scriptCommands are the programs testdata/*.txtar scripts can run: the
// station root command as "station", plus test fixtures that other test
// files add in their init (e.g. audit-fixture).
var scriptCommands = map[string]func(){
	"station": func() {
		err := NewRootCommand("test").ExecuteContext(context.Background())
		os.Exit(Exit(err, os.Stderr))
	},
}

func TestMain(m *testing.M) {
	testscript.Main(m, scriptCommands)
}

// TestScripts runs every testdata/*.txtar script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: false,
		Setup: func(e *testscript.Env) error {
			// No configuration from the developer's environment.
			e.Setenv("STATION_CONFIG", "")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// status CODE PROGRAM ARGS... runs the program and requires exit
			// status CODE (stdout and stderr are kept for later checks).
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
		},
	})
}
