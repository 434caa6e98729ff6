package station

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// tpmState is what provisioning changes on a TPM: its persistent handles and
// its permanent auth bits.
func tpmState(t testing.TB, tpm *tpmops.TPM) string {
	t.Helper()
	hs, err := tpm.Persistent()
	if err != nil {
		t.Fatal(err)
	}
	p, err := tpm.Permanent()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("persistent %v, permanent %#x", hs, p.Raw)
}

// TestDatabaseDeletedBetweenUnits deletes the database after a unit
// finishes, as a clumsy operator would mid-batch: the next unit must stop
// with ErrReplaced before its TPM changes at all, instead of recording its
// lockout escrow in a file nobody can reach.
func TestDatabaseDeletedBetweenUnits(t *testing.T) {
	l := newTestLine(t, nil)
	first := l.simUnit()
	if _, err := l.provision(Request{Serial: "GONE-1", TPM: first, TPMAddr: "sim"}); err != nil {
		t.Fatal(err)
	}
	first.Close()
	if err := os.Remove(l.cfg.Station.DB); err != nil {
		t.Fatal(err)
	}
	next := l.simUnit()
	before := tpmState(t, next)
	_, err := l.provision(Request{Serial: "GONE-2", TPM: next, TPMAddr: "sim"})
	if !errors.Is(err, store.ErrReplaced) {
		t.Fatalf("provision after the database was deleted: %v, want ErrReplaced", err)
	}
	if after := tpmState(t, next); after != before {
		t.Errorf("the TPM changed although the database was gone:\nbefore %s\nafter  %s", before, after)
	}
	if _, err := os.Stat(l.cfg.Station.DB); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a database reappeared at the path: %v", err)
	}
}

// TestDatabaseReplacedMidUnit swaps or deletes the database file while a
// unit runs, just before a step: the step's journal commit notices, and the
// step never touches the TPM. Before ownership this is the case that
// matters: the lockout auth must never be applied with its escrow in a
// file that is no longer the station's database.
func TestDatabaseReplacedMidUnit(t *testing.T) {
	for _, tc := range []struct {
		step    string
		replace bool // rename another file over the path instead of deleting it
	}{
		{StepSRK, true},
		{StepOwnership, false},
		{StepOwnership, true},
	} {
		name := tc.step + "/deleted"
		if tc.replace {
			name = tc.step + "/replaced"
		}
		t.Run(name, func(t *testing.T) {
			l := newTestLine(t, nil)
			tpm := l.simUnit()
			var before string
			gone := false
			progress := func(_, step string) {
				if step != tc.step || gone {
					return
				}
				gone, before = true, tpmState(t, tpm)
				path := l.cfg.Station.DB
				if !tc.replace {
					if err := os.Remove(path); err != nil {
						t.Fatal(err)
					}
					return
				}
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+".copy", b, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(path+".copy", path); err != nil {
					t.Fatal(err)
				}
			}
			_, err := l.provision(Request{Serial: "SWAP-1", TPM: tpm, TPMAddr: "sim", Observer: ObserverFuncs{Started: progress}})
			if !gone {
				t.Fatalf("step %s never started", tc.step)
			}
			if !errors.Is(err, store.ErrReplaced) {
				t.Fatalf("provision with the database swapped before %s: %v, want ErrReplaced", tc.step, err)
			}
			if after := tpmState(t, tpm); after != before {
				t.Errorf("step %s changed the TPM after the database was swapped:\nbefore %s\nafter  %s", tc.step, before, after)
			}
			if p, _ := tpm.Permanent(); p.LockoutAuthSet {
				t.Error("the lockout auth was applied")
			}
		})
	}
}
