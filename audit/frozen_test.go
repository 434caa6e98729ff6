package audit

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var update = flag.Bool("update", false, "rewrite the frozen exports under testdata/ (never for a release: they must keep verifying)")

// frozen exports were written once with the test keys under testdata/ (test
// keys, never used elsewhere). Later versions must keep verifying them: the
// record, checkpoint and signature formats are a contract with auditors.
var frozen = []struct{ dir, key, pub, format string }{
	{"frozen-export-ed25519", "test-ed25519.pem", "test-ed25519.pub.pem", "jsonl"},
	{"frozen-export-p256-csv", "test-p256.pem", "test-p256.pub.pem", "csv"},
}

func TestFrozenExports(t *testing.T) {
	for _, f := range frozen {
		t.Run(f.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", f.dir)
			if *update {
				writeFrozen(t, dir, f.key, f.format)
			}
			pemBytes, err := os.ReadFile(filepath.Join("testdata", f.pub))
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParsePublicKeyPEM(pemBytes)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyExport(dir, pub, nil)
			if err != nil {
				t.Fatalf("frozen export no longer verifies: %v", err)
			}
			if rep.Records != 71 || len(rep.Warnings) != 0 {
				t.Fatalf("report %+v", rep)
			}
			proof, err := os.ReadFile(filepath.Join("testdata", f.dir+".proof.json"))
			if err != nil {
				t.Fatal(err)
			}
			prep, err := VerifyProof(proof, pub)
			if err != nil {
				t.Fatalf("frozen proof no longer verifies: %v", err)
			}
			if len(prep.Records) != len(unitSteps) {
				t.Fatalf("proof report %+v", prep)
			}
			// Ed25519 checkpoints open with golang.org/x/mod/sumdb/note itself,
			// given the verifier key the README prints.
			if f.key == frozen[0].key {
				msg, _ := os.ReadFile(filepath.Join(dir, FileCheckpoint))
				vkey, err := VerifierKey(rep.Origin, pub)
				if err != nil {
					t.Fatal(err)
				}
				v, err := note.NewVerifier(vkey)
				if err != nil {
					t.Fatalf("sumdb/note rejects the verifier key %q: %v", vkey, err)
				}
				if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
					t.Fatalf("sumdb/note does not open the checkpoint: %v", err)
				}
				readme, _ := os.ReadFile(filepath.Join(dir, FileReadme))
				if !bytes.Contains(readme, []byte(vkey)) {
					t.Fatal("README does not print the verifier key")
				}
			}
			// and the other key rejects both
			other, _ := LoadPrivateKey(filepath.Join("testdata", frozen[0].key))
			if f.key == frozen[0].key {
				other = testKey(9)
			}
			if _, err := VerifyExport(dir, other.Public(), nil); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("verified with another key: %v", err)
			}
			if _, err := VerifyProof(proof, other.Public()); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("proof verified with another key: %v", err)
			}
		})
	}
}

func writeFrozen(t *testing.T, dir, keyFile, format string) {
	key, err := LoadPrivateKey(filepath.Join("testdata", keyFile))
	if err != nil {
		t.Fatal(err)
	}
	l, db := newTestLog(t, key)
	l.window = 16
	l.now = func() func() time.Time {
		tick := 0
		return func() time.Time {
			tick++
			return time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC).Add(time.Duration(tick) * 1500 * time.Millisecond)
		}
	}()
	addUnits(t, l, db, 0, 10)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Export(dir, ExportOptions{Format: format, Operator: "frozen"}); err != nil {
		t.Fatal(err)
	}
	proof, err := l.Proof("SN00003")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+".proof.json", proof, 0o644); err != nil {
		t.Fatal(err)
	}
}
