package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The helpers follow bbolt's own internal/btesting: each takes testing.TB,
// makes its files under t.TempDir and closes what it opens in t.Cleanup.

const testStation = "line1-st03"

func testOptions() Options { return Options{StationID: testStation, Timeout: 100 * time.Millisecond} }

// mustCreateDB returns a new, open station database in a temporary folder.
func mustCreateDB(tb testing.TB) *DB {
	tb.Helper()
	db, err := Create(filepath.Join(tb.TempDir(), "station.db"), testOptions(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// mustReopen closes db and opens its file again with o.
func mustReopen(tb testing.TB, db *DB, o Options) *DB {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	db, err := Open(db.Path(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// mustPut writes units in one transaction.
func mustPut(tb testing.TB, db *DB, us ...*Unit) {
	tb.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		for _, u := range us {
			if err := PutUnit(tx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// filled returns the bytes of a closed station database holding n units
// with EK, certificate and a few kilobytes of data each, as provisioning
// leaves them.
func filled(tb testing.TB, n int) []byte {
	tb.Helper()
	db := mustCreateDB(tb)
	for i := range n {
		mustPut(tb, db, testUnit(i))
	}
	db.Close()
	b, err := os.ReadFile(db.Path())
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func testUnit(i int) *Unit {
	serial := fmt.Sprintf("SN-%04d", i)
	ek := sha256.Sum256([]byte("ek/" + serial))
	pad := make([]byte, 1500) // an EK certificate's worth
	return &Unit{Serial: serial, StationID: testStation, Status: StatusProvisioned, Attestation: "tpm",
		EKPublic: ek[:], EKSHA256: hex.EncodeToString(ek[:]), EKCert: pad, CertSerial: "c" + serial,
		Steps: []Step{{Name: "ek", State: StepDone, Attempts: 1}}}
}

// writeFile writes b to a new file in a temporary folder and returns its path.
func writeFile(tb testing.TB, b []byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "station.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// storeErr reports whether err is one of the store's own errors for a bad
// file (an *Error wrapping ErrNotStationDB or ErrDamaged).
func storeErr(err error) bool {
	var se *Error
	return errors.As(err, &se) && (errors.Is(err, ErrNotStationDB) || errors.Is(err, ErrDamaged))
}

// readAll opens path and reads everything a command would: every unit,
// every bucket and bbolt's consistency check.
func readAll(path string) error {
	o := testOptions()
	o.ReadOnly = true
	db, err := Open(path, o)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Units(nil); err != nil {
		return err
	}
	_, err = db.checkAll()
	return err
}
