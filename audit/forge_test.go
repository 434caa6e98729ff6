package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/internal/audittest"
)

// These tests attack the log the way someone with write access to the
// database but not the station key would (internal/audittest does the
// forger's work properly: chain and tree hashes recomputed), and require
// that the station refuses to sign anything after it and keeps every
// checkpoint that proves the rewrite.

const station = "line1-st03"

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func openLog(tb testing.TB, path string, seed byte, witness string) (*audit.Log, *bolt.DB) {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	l, err := audit.Open(db, station, "test", key(seed))
	if err != nil {
		tb.Fatal(err)
	}
	l.SetWitness(witness)
	return l, db
}

// units appends count units of 7 records, one transaction per record.
func units(tb testing.TB, l *audit.Log, db *bolt.DB, first, count int) {
	tb.Helper()
	for u := first; u < first+count; u++ {
		for _, step := range []string{"ek", "srk", "device-key", "ownership", "cert", "flash", "done"} {
			if err := db.Update(func(tx *bolt.Tx) error {
				_, err := l.Append(tx, audit.Event{Serial: fmt.Sprintf("SN%05d", u), Type: "provision." + step, Payload: map[string]any{"u": u}})
				return err
			}); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

func checkpoints(tb testing.TB, db *bolt.DB) map[uint64]string {
	tb.Helper()
	m, err := audittest.Checkpoints(db)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func wantIntegrity(tb testing.TB, what string, err error, text string) {
	tb.Helper()
	var ve *audit.VerifyError
	if !errors.Is(err, audit.ErrIntegrity) || !errors.As(err, &ve) {
		tb.Fatalf("%s: want an integrity violation naming a record, got %v", what, err)
	}
	if !strings.Contains(err.Error(), text) {
		tb.Fatalf("%s: %q does not say %q", what, err, text)
	}
}

// routine runs what the station does in routine commands (append a record,
// hand out the checkpoint, export, prove a unit) and requires each to be
// refused with text in the error, nothing signed, nothing deleted, no export
// folder.
func routine(t *testing.T, l *audit.Log, db *bolt.DB, text string) {
	t.Helper()
	before := checkpoints(t, db)
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := l.Append(tx, audit.Event{Type: "startup"})
		return err
	})
	wantIntegrity(t, "append", err, text)
	err = db.Update(func(tx *bolt.Tx) error { _, err := l.Checkpoint(tx); return err })
	wantIntegrity(t, "checkpoint", err, text)
	wantIntegrity(t, "check", l.Check(), text)
	out := filepath.Join(t.TempDir(), "export")
	_, err = l.Export(out, audit.ExportOptions{})
	wantIntegrity(t, "export", err, text)
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Fatalf("a refused export left %v", ents)
	}
	_, err = l.Proof("SN00003")
	wantIntegrity(t, "proof", err, text)
	if after := checkpoints(t, db); !maps.Equal(before, after) {
		t.Fatalf("checkpoints changed: %d before, %d after", len(before), len(after))
	}
}

func TestNoLaundering(t *testing.T) {
	for _, tc := range []struct {
		name  string
		seq   uint64 // the record rewritten
		from  uint64 // checkpoints for sizes from this on are deleted too (0: none)
		found string // what the refusal says
	}{
		{"first record", 1, 0, "record 15: records 1..15 do not hash to the root"},
		{"a middle record", 30, 0, "record 31: records 1..31 do not hash to the root"},
		{"the last record", 140, 0, "record 140: records 1..140 do not hash"},
		{"a record and the checkpoints after it", 135, 128, "record 128: records 128..140 are covered by no signed checkpoint"},
		{"a record and every checkpoint", 30, 1, "record 1: records 1..140 are covered by no signed checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, db := openLog(t, filepath.Join(t.TempDir(), "station.db"), 1, "")
			audit.SetWindowForTest(l, 16) // checkpoints kept: 15, 31, ..., 127, 140
			units(t, l, db, 0, 20)        // 140 records
			if _, err := audit.Verify(db, l.Public(), nil); err != nil {
				t.Fatal(err)
			}
			if err := audittest.Forge(db, tc.seq, func(r *audit.Record) {
				r.Payload = json.RawMessage(`{"u":999}`)
			}); err != nil {
				t.Fatal(err)
			}
			if tc.from > 0 {
				if err := audittest.DeleteCheckpoints(db, tc.from); err != nil {
					t.Fatal(err)
				}
			}
			_, err := audit.Verify(db, l.Public(), nil)
			wantIntegrity(t, "verify", err, tc.found)
			routine(t, l, db, tc.found)
			// A station restarted on the database refuses the same way.
			path := db.Path()
			db.Close()
			l2, db2 := openLog(t, path, 1, "")
			routine(t, l2, db2, tc.found)
		})
	}
}

func TestWitnessCatchesRollbackAndRewrite(t *testing.T) {
	dir := t.TempDir()
	wit := filepath.Join(dir, "witness")
	if err := os.Mkdir(wit, 0o755); err != nil {
		t.Fatal(err)
	}
	l, db := openLog(t, filepath.Join(dir, "station.db"), 1, wit)
	units(t, l, db, 0, 20) // 140 records, window 1024: one checkpoint kept
	var head []byte
	db.View(func(tx *bolt.Tx) error { head, _ = l.Checkpoint(tx); return nil })
	got, err := os.ReadFile(audit.WitnessFile(wit, station))
	if err != nil || !bytes.Equal(got, head) {
		t.Fatalf("the witness does not hold the latest checkpoint: %v\n%s\nwant\n%s", err, got, head)
	}
	anchor, err := audit.ReadAnchor(wit, station)
	if err != nil || !bytes.Equal(anchor, head) {
		t.Fatalf("ReadAnchor(witness folder): %v", err)
	}
	// A copy of the database taken now, restored later, is a rollback.
	path := db.Path()
	db.Close()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, db = openLog(t, path, 1, wit)
	units(t, l, db, 20, 1)
	db.Close()
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	anchor, _ = audit.ReadAnchor(wit, station)
	l, db = openLog(t, path, 1, "")
	if _, err := audit.Verify(db, l.Public(), nil); err != nil {
		t.Fatalf("the restored copy verifies on its own: %v", err) // so the witness is needed
	}
	_, err = audit.Verify(db, l.Public(), anchor)
	wantIntegrity(t, "verify --anchor witness", err, "record 141: record is missing")
	db.Close()
	l, db = openLog(t, path, 1, wit)
	routine(t, l, db, "the witness "+audit.WitnessFile(wit, station)+" holds the signed checkpoint for size 147")

	// A history rewritten and signed again by someone holding the key (a
	// new database, same station and key) does not extend the witness's.
	l2, db2 := openLog(t, filepath.Join(dir, "rewritten.db"), 1, wit)
	err = db2.Update(func(tx *bolt.Tx) error {
		_, err := l2.Append(tx, audit.Event{Type: "startup"})
		return err
	})
	wantIntegrity(t, "append to another history", err, "the witness")
	path2 := db2.Path()
	db2.Close()
	l2, db2 = openLog(t, path2, 1, "")
	units(t, l2, db2, 0, 30)
	_, err = audit.Verify(db2, l2.Public(), anchor)
	wantIntegrity(t, "verify another history --anchor", err, "do not hash to the root of the anchor checkpoint")
}

func TestReadAnchor(t *testing.T) {
	l, db := openLog(t, filepath.Join(t.TempDir(), "station.db"), 1, "")
	units(t, l, db, 0, 2)
	proof, err := l.Proof("SN00001")
	if err != nil {
		t.Fatal(err)
	}
	exp := filepath.Join(t.TempDir(), "export")
	res, err := l.Export(exp, audit.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	proofFile := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(proofFile, proof, 0o644)
	shared := t.TempDir() // a witness folder several stations share
	os.WriteFile(audit.WitnessFile(shared, station), []byte(res.Note), 0o644)
	for name, path := range map[string]string{
		"export folder": exp, "export checkpoint": filepath.Join(exp, audit.FileCheckpoint),
		"proof": proofFile, "witness folder": shared,
	} {
		a, err := audit.ReadAnchor(path, station)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rep, err := audit.Verify(db, l.Public(), a); err != nil || rep.Anchor == nil || rep.Anchor.Size != res.Checkpoint.Size {
			t.Fatalf("%s: %v %+v", name, err, rep)
		}
	}
	os.WriteFile(audit.WitnessFile(shared, "line1-st04"), []byte(res.Note), 0o644)
	if _, err := audit.ReadAnchor(shared, ""); err == nil || !strings.Contains(err.Error(), "several stations") {
		t.Fatalf("ambiguous witness folder: %v", err)
	}
	if _, err := audit.ReadAnchor(t.TempDir(), station); err == nil {
		t.Fatal("an empty folder gave an anchor")
	}
}

// A witness folder that is not there (a share not mounted) stops the
// station before it signs anything it could not witness.
func TestWitnessFolderMissing(t *testing.T) {
	l, db := openLog(t, filepath.Join(t.TempDir(), "station.db"), 1, filepath.Join(t.TempDir(), "not-mounted"))
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := l.Append(tx, audit.Event{Type: "startup"})
		return err
	})
	if !errors.Is(err, audit.ErrWitness) || !errors.Is(l.Check(), audit.ErrWitness) {
		t.Fatalf("append with the witness folder missing: %v", err)
	}
	if cps := checkpoints(t, db); len(cps) != 0 {
		t.Fatalf("signed without a witness: %v", cps)
	}
}
