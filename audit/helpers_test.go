package audit

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testKey is a fixed Ed25519 key (seed 0x01...): tests and the frozen export.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// unitSteps are the events of one provisioned unit.
var unitSteps = []string{"provision.ek", "provision.srk", "provision.device-key", "provision.ownership", "provision.cert", "provision.flash", "provision.done"}

func openTestDB(tb testing.TB, path string) *bolt.DB {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	db.NoSync = true // tests need no durability; the crash test opens its own
	tb.Cleanup(func() { db.Close() })
	return db
}

// newTestLog opens a log in a fresh database with a frozen clock.
func newTestLog(tb testing.TB, key crypto.Signer) (*Log, *bolt.DB) {
	tb.Helper()
	db := openTestDB(tb, filepath.Join(tb.TempDir(), "station.db"))
	l, err := Open(db, "line1-st03", "v1.0.0-test", key)
	if err != nil {
		tb.Fatal(err)
	}
	var tick int64
	l.now = func() time.Time {
		tick++
		return time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC).Add(time.Duration(tick) * 1234567 * time.Microsecond)
	}
	return l, db
}

// addUnits provisions units first..first+count-1: one transaction per unit,
// its records then a checkpoint.
func addUnits(tb testing.TB, l *Log, db *bolt.DB, first, count int) {
	tb.Helper()
	for u := first; u < first+count; u++ {
		serial := fmt.Sprintf("SN%05d", u)
		err := db.Update(func(tx *bolt.Tx) error {
			for i, step := range unitSteps {
				payload := map[string]any{"step": i, "ek_sha256": fmt.Sprintf("%064x", u), "note": "quote \" backslash \\ newline \n <tag> é"}
				if _, err := l.Append(tx, Event{Serial: serial, Type: step, Operator: "alice", Payload: payload}); err != nil {
					return err
				}
			}
			_, err := l.Checkpoint(tx)
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// wantSeq asserts err is a *VerifyError at seq.
func wantSeq(tb testing.TB, err error, seq uint64) {
	tb.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		tb.Fatalf("want a VerifyError at record %d, got %v", seq, err)
	}
	if !errors.Is(err, ErrIntegrity) {
		tb.Fatalf("VerifyError does not wrap ErrIntegrity")
	}
	if ve.Seq != seq {
		tb.Fatalf("want record %d, got %v", seq, err)
	}
}

func mustVerify(tb testing.TB, db *bolt.DB, pub crypto.PublicKey, anchor []byte) *Report {
	tb.Helper()
	rep, err := Verify(db, pub, anchor)
	if err != nil {
		tb.Fatalf("verify: %v", err)
	}
	return rep
}

func writeFiles(tb testing.TB, files map[string][]byte) string {
	tb.Helper()
	dir := tb.TempDir()
	for name, data := range files {
		if data == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}
