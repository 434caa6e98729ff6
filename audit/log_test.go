package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestRoundTrip(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]crypto.Signer{"ed25519": testKey(1), "ecdsa-p256": ec}
	for name, k := range keys {
		t.Run(name, func(t *testing.T) {
			l, db := newTestLog(t, k)
			addUnits(t, l, db, 0, 20)
			rep := mustVerify(t, db, l.Public(), nil)
			if rep.Records != 140 || rep.Unsigned != 0 || rep.Latest.Size != 140 {
				t.Fatalf("report %+v", rep)
			}
			for _, format := range []string{"jsonl", "csv"} {
				dir := filepath.Join(t.TempDir(), "export")
				res, err := l.Export(dir, ExportOptions{Format: format, Operator: "auditor"})
				if err != nil {
					t.Fatal(err)
				}
				erep, err := VerifyExport(dir, l.Public(), nil)
				if err != nil {
					t.Fatalf("%s: %v", format, err)
				}
				if erep.Records != res.Records || erep.Latest.Size != res.Records || len(erep.Warnings) != 0 {
					t.Fatalf("%s: report %+v, export %+v", format, erep, res)
				}
				if _, err := l.Export(dir, ExportOptions{Format: format}); !errors.Is(err, ErrExportDir) {
					t.Fatalf("export into a non-empty folder: %v", err)
				}
			}
			proof, err := l.Proof("SN00007")
			if err != nil {
				t.Fatal(err)
			}
			prep, err := VerifyProof(proof, l.Public())
			if err != nil {
				t.Fatal(err)
			}
			if len(prep.Records) != len(unitSteps) || prep.Records[0].Seq != 7*7+1 {
				t.Fatalf("proof report %+v", prep)
			}
			db.View(func(tx *bolt.Tx) error {
				recs, err := UnitRecords(tx, "SN00007")
				if err != nil || len(recs) != len(unitSteps) || recs[6].Event != "provision.done" {
					t.Fatalf("UnitRecords: %v %v", recs, err)
				}
				return nil
			})
			if _, err := l.Proof("nope"); !errors.Is(err, ErrNoRecords) {
				t.Fatalf("proof of unknown unit: %v", err)
			}
		})
	}
}

func TestCheckpointIdempotentAndPruned(t *testing.T) {
	l, db := newTestLog(t, testKey(1))
	var a, b []byte
	err := db.Update(func(tx *bolt.Tx) error {
		if _, err := l.Append(tx, Event{Type: "startup"}); err != nil {
			return err
		}
		var err error
		if a, err = l.Checkpoint(tx); err != nil {
			return err
		}
		b, err = l.Checkpoint(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("checkpoint of an unchanged log changed")
	}
	// 300 units of 7 records = 2100 records (and the startup record): kept
	// checkpoints are the last of each 1024-record window, plus the
	// export's (2101; its own record is 2102).
	addUnits(t, l, db, 0, 300)
	if _, err := l.Export(filepath.Join(t.TempDir(), "x"), ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	addUnits(t, l, db, 300, 3)
	var sizes []uint64
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).ForEach(func(k, _ []byte) error { sizes = append(sizes, beUint(k)); return nil })
	})
	want := []uint64{1023, 2047, 2101, 2123}
	if fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("kept checkpoints %v, want %v", sizes, want)
	}
	mustVerify(t, db, l.Public(), nil)
}

func TestOpenRefusesOtherStationOrKey(t *testing.T) {
	l, db := newTestLog(t, testKey(1))
	addUnits(t, l, db, 0, 1)
	if _, err := Open(db, "other", "v", testKey(1)); !errors.Is(err, ErrStation) {
		t.Fatalf("other station ID: %v", err)
	}
	if _, err := Open(db, "line1-st03", "v", testKey(2)); !errors.Is(err, ErrStation) {
		t.Fatalf("other key: %v", err)
	}
	if _, err := Open(db, "has space", "v", testKey(1)); err == nil {
		t.Fatal("station ID with a space accepted")
	}
}

func TestNoSecretInPayload(t *testing.T) {
	l, db := newTestLog(t, testKey(1))
	for _, p := range []any{
		map[string]string{"lockout_auth": "x"},
		map[string]string{"CA-Key-Password": "x"},
		map[string]any{"nested": map[string]string{"symmetricKey": "x"}},
		map[string]string{"pem": "-----BEGIN PRIVATE KEY-----\n..."},
		map[string]string{"sas": "x"},
	} {
		err := db.Update(func(tx *bolt.Tx) error {
			_, err := l.Append(tx, Event{Type: "config", Payload: p})
			return err
		})
		if !errors.Is(err, ErrSecret) {
			t.Errorf("payload %v: %v", p, err)
		}
	}
	ok := map[string]any{"owner_auth_policy": "empty", "ek_sha256": "ab", "escrow": map[string]bool{"sealed": true}}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := l.Append(tx, Event{Type: "config", Payload: ok}); return err }); err != nil {
		t.Fatal(err)
	}
}

func TestKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "key.pem")
	created, err := GenerateKey(path)
	if err != nil || !created {
		t.Fatalf("GenerateKey: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v %v", fi.Mode(), err)
	}
	s1, err := LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	created, err = GenerateKey(path)
	if err != nil || created {
		t.Fatalf("second GenerateKey: %v %v", created, err)
	}
	s2, _ := LoadPrivateKey(path)
	if !sameKey(s1.Public(), s2.Public()) {
		t.Fatal("GenerateKey replaced an existing key")
	}
	pemBytes, err := MarshalPublicKeyPEM(s1.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKeyPEM(pemBytes)
	if err != nil || !sameKey(pub, s1.Public()) {
		t.Fatalf("public key round trip: %v", err)
	}
	priv, _ := os.ReadFile(path)
	if _, err := ParsePublicKeyPEM(priv); !errors.Is(err, ErrKey) {
		t.Fatalf("private key PEM accepted as public key: %v", err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := MarshalPublicKeyPEM(p384.Public()); !errors.Is(err, ErrKey) {
		t.Fatalf("P-384 accepted: %v", err)
	}
	// The Ed25519 verifier key is the one x/mod/sumdb/note computes.
	vkey, err := VerifierKey(Origin("st"), s1.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(vkey, "station/st+") {
		t.Fatalf("vkey %q", vkey)
	}
}

func TestConcurrentAppend(t *testing.T) {
	l, db := newTestLog(t, testKey(1))
	var mu sync.Mutex
	base := l.now
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return base() }
	var wg sync.WaitGroup
	for f := 0; f < 6; f++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := 0; u < 10; u++ {
				err := db.Update(func(tx *bolt.Tx) error {
					for _, s := range unitSteps {
						if _, err := l.Append(tx, Event{Serial: fmt.Sprintf("F%d-%d", f, u), Type: s}); err != nil {
							return err
						}
					}
					_, err := l.Checkpoint(tx)
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	rep := mustVerify(t, db, l.Public(), nil)
	if rep.Records != 6*10*7 {
		t.Fatalf("%d records", rep.Records)
	}
}

func TestParseCanonical(t *testing.T) {
	r := Record{Seq: 12, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Station: "st", Operator: "a\"b\\c\nd\x01é",
		Serial: "SN1", Event: "ev", Version: "v1", Payload: json.RawMessage(`{"a":[1,2.5e-3,"x"],"b":null}`), Prev: make([]byte, 32)}
	good, err := r.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":12,"time":"2026-01-02T03:04:05.000000006Z","station":"st","operator":"a\"b\\c\nd\u0001é","serial":"SN1","event":"ev","version":"v1","payload":{"a":[1,2.5e-3,"x"],"b":null},"prev":"0000000000000000000000000000000000000000000000000000000000000000"}`
	if string(good) != want {
		t.Fatalf("canonical bytes\n got %s\nwant %s", good, want)
	}
	back, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Bytes()
	if string(again) != string(good) {
		t.Fatal("round trip changed the record")
	}
	for name, bad := range map[string]string{
		"space":           strings.Replace(want, `"seq":12`, `"seq": 12`, 1),
		"leading zero":    strings.Replace(want, `"seq":12`, `"seq":012`, 1),
		"seq zero":        strings.Replace(want, `"seq":12`, `"seq":0`, 1),
		"short time":      strings.Replace(want, `05.000000006Z`, `05.000006Z`, 1),
		"bad date":        strings.Replace(want, `2026-01-02`, `2026-02-30`, 1),
		"escaped slash":   strings.Replace(want, `"SN1"`, `"SN\/1"`, 1),
		"unicode escape":  strings.Replace(want, `"SN1"`, `"SN\u0031"`, 1),
		"upper hex":       strings.Replace(want, `"prev":"00`, `"prev":"0A`, 1),
		"payload spaces":  strings.Replace(want, `{"a":[1`, `{"a": [1`, 1),
		"payload invalid": strings.Replace(want, `"b":null`, `"b":nul`, 1),
		"field order":     strings.Replace(want, `"station":"st","operator"`, `"operator":"x","station"`, 1),
		"extra field":     strings.Replace(want, `,"prev"`, `,"x":1,"prev"`, 1),
		"trailing":        want + " ",
		"newline escape":  strings.Replace(want, `\n`, `\u000a`, 1),
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}
}

// TestVerifyMemoryFlat: what a verification allocates does not grow with the
// log (it streams, holding O(log n) hashes).
func TestVerifyMemoryFlat(t *testing.T) {
	alloc := func(units int) uint64 {
		l, db := newTestLog(t, testKey(1))
		addUnits(t, l, db, 0, units)
		dir := filepath.Join(t.TempDir(), "x")
		if _, err := l.Export(dir, ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		mustVerify(t, db, l.Public(), nil)
		if _, err := VerifyExport(dir, l.Public(), nil); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, big := alloc(20), alloc(2000) // 140 and 14,000 records, 1 and 14 checkpoints
	t.Logf("allocated %d bytes for 140 records, %d for 14,000", small, big)
	// Records allocate nothing; each kept checkpoint (one per
	// CheckpointWindow records) costs a few KiB of garbage to open.
	if perRecord := float64(big-small) / (14000 - 140); perRecord > 16 {
		t.Fatalf("verification allocates %.1f bytes per record: %d bytes for 140 records, %d for 14,000", perRecord, small, big)
	}
}
