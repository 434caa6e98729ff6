package cmd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/factory-id/station/internal/softhsmtest"
)

var caBin struct {
	once sync.Once
	path string
	err  error
}

// caStationBinary builds cmd/station once per test process: the ca scripts
// run the real binary, so the exit code, stdout and stderr are what an
// operator sees, and SoftHSM2 reads each script's own SOFTHSM2_CONF.
func caStationBinary(t *testing.T) string {
	t.Helper()
	caBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "station-ca-bin-")
		if err != nil {
			caBin.err = err
			return
		}
		caBin.path = filepath.Join(dir, "station")
		out, err := exec.Command("go", "build", "-o", caBin.path, "./station").CombinedOutput()
		if err != nil {
			caBin.err = errors.New(string(out))
		}
	})
	if caBin.err != nil {
		t.Fatalf("building station: %v", caBin.err)
	}
	return caBin.path
}

// TestCAScripts runs testdata/ca*.txtar. Commands:
//
//	station ARGS...   run the binary (! station ... expects a failure)
//	exitcode N        the last station's exit code was N
//
// $STATION_BIN is the binary (for scripts that need a pseudo-terminal).
// Conditions: [softhsm] — SoftHSM2 is installed; each script then gets a
// token (label "station", PIN in $WORK/hsm/pin) and $HSM, the start of a
// pkcs11: URI naming it (append ;id=%NN;object=NAME?pin-source=$WORK/hsm/pin).
func TestCAScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/ca*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no ca scripts: %v", err)
	}
	bin := caStationBinary(t)
	hsm := softhsmtest.Available() == nil
	if !hsm && os.Getenv("CI") == "true" {
		t.Fatal(softhsmtest.ErrMissing)
	}
	testscript.Run(t, testscript.Params{
		Files: files,
		Setup: func(env *testscript.Env) error {
			env.Setenv("STATION_CONFIG", filepath.Join(env.WorkDir, "none.yaml"))
			env.Setenv("STATION_BIN", bin)
			if !hsm {
				return nil
			}
			dir := filepath.Join(env.WorkDir, "hsm")
			tk, err := softhsmtest.Create(dir, "station", "pin-3141-5926", "so-pin-2718")
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "pin"), []byte(tk.PIN+"\n"), 0o600); err != nil {
				return err
			}
			env.Setenv("SOFTHSM2_CONF", tk.Conf)
			env.Setenv("HSM", "pkcs11:module-path="+softhsmtest.Module+";token="+tk.Label)
			env.Setenv("HSM_PIN", tk.PIN)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "softhsm" {
				return hsm, nil
			}
			return false, errors.New("unknown condition " + cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"station": func(ts *testscript.TestScript, neg bool, args []string) {
				err := ts.Exec(bin, args...)
				code := 0
				if err != nil {
					var ee *exec.ExitError
					if !errors.As(err, &ee) {
						ts.Fatalf("running station: %v", err)
					}
					code = ee.ExitCode()
				}
				ts.Setenv("EXITCODE", strconv.Itoa(code))
				if neg && code == 0 {
					ts.Fatalf("station succeeded unexpectedly")
				}
				if !neg && code != 0 {
					ts.Fatalf("station failed: exit %d", code)
				}
			},
			"exitcode": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 || neg {
					ts.Fatalf("usage: exitcode N")
				}
				if got := ts.Getenv("EXITCODE"); got != args[0] {
					ts.Fatalf("exit code %s, want %s", got, args[0])
				}
			},
		},
	})
}
