package cmd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/store"
)

func init() {
	scriptCmds["genkey"] = enrollGenKey
	scriptCmds["seed"] = enrollSeed
	scriptCmds["seedsym"] = enrollSeedSym
}

// genkey KEY PUB: a station key (as `station init` makes it) and its public PEM.
func enrollGenKey(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: genkey KEY PUB")
	}
	if _, err := audit.GenerateKey(ts.MkAbs(args[0])); err != nil {
		ts.Fatalf("%v", err)
	}
	s, err := audit.LoadPrivateKey(ts.MkAbs(args[0]))
	ts.Check(err)
	p, err := audit.MarshalPublicKeyPEM(s.Public())
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), p, 0o644))
}

// seed DB N PREFIX [START [EKSEED]]: N provisioned TPM units PREFIX%04d from
// START (default 0). The EK of a unit is "ek-" + its serial, or "ek-" + EKSEED
// (+ "/i" after the first) when given: two stations can hold clones. Units
// with an odd number chain to old.crt, the others to line.crt (both written
// next to DB, once).
func enrollSeed(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: seed DB N PREFIX [START [EKSEED]]")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	prefix, start, ekSeed := args[2], 0, ""
	if len(args) > 3 {
		start, err = strconv.Atoi(args[3])
		ts.Check(err)
	}
	if len(args) > 4 {
		ekSeed = args[4]
	}
	dbPath := ts.MkAbs(args[0])
	dir := filepath.Dir(dbPath)
	line := enrollCA(ts, filepath.Join(dir, "line.crt"), "line")
	old := enrollCA(ts, filepath.Join(dir, "old.crt"), "old-line")
	db := seedDB(ts, dbPath)
	defer db.Close()
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	ts.Check(db.Update(func(tx *bolt.Tx) error {
		for k := range n {
			i := start + k
			serial := fmt.Sprintf("%s%04d", prefix, i)
			ek := []byte("ek-" + serial)
			if ekSeed != "" {
				ek = []byte("ek-" + ekSeed)
				if k > 0 {
					ek = fmt.Appendf(ek, "/%d", k)
				}
			}
			ek = append([]byte{0, byte(len(ek))}, ek...) // TPM2B-shaped
			sum := sha256.Sum256(ek)
			u := &store.Unit{Serial: serial, Status: store.StatusProvisioned, Attestation: "tpm",
				RegistrationID: enroll.RegistrationID(ek), EKPublic: ek, EKSHA256: hex.EncodeToString(sum[:]),
				ProvisionedAt: t0.Add(time.Duration(i) * time.Minute), Chain: [][]byte{line}}
			if i%2 == 1 {
				u.Chain = [][]byte{old}
			}
			if err := store.PutUnit(tx, u); err != nil {
				return err
			}
		}
		return nil
	}))
}

func enrollCA(ts *testscript.TestScript, path, cn string) []byte {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		return blk.Bytes
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	ts.Check(err)
	ts.Check(os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	return der
}

// seedDB opens the station database at path, creating it (as `station
// init` would, without an audit record) for the station.yaml beside it.
func seedDB(ts *testscript.TestScript, path string) *store.DB {
	o := store.Options{Timeout: time.Second}
	if _, err := os.Stat(path); err == nil {
		db, err := store.Open(path, o)
		ts.Check(err)
		return db
	}
	cfg, err := configs.Load(filepath.Join(filepath.Dir(path), "station.yaml"), true, nil)
	ts.Check(err)
	o.StationID = cfg.Station.ID
	db, err := store.Create(path, o, nil)
	ts.Check(err)
	return db
}

// seedsym DB N PREFIX: N provisioned symmetric-key units, registration ID =
// lower-case serial.
func enrollSeedSym(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: seedsym DB N PREFIX")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	db := seedDB(ts, ts.MkAbs(args[0]))
	defer db.Close()
	ts.Check(db.Update(func(tx *bolt.Tx) error {
		for i := range n {
			serial := fmt.Sprintf("%s%04d", args[2], i)
			u := &store.Unit{Serial: serial, Status: store.StatusProvisioned, Attestation: "symmetric-key",
				RegistrationID: strings.ToLower(serial), ProvisionedAt: time.Date(2026, 3, 1, 8, i, 0, 0, time.UTC)}
			if err := store.PutUnit(tx, u); err != nil {
				return err
			}
		}
		return nil
	}))
}
