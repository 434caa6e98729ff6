package station

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/storetest"
	"github.com/factory-id/station/store"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// testEnv opens a real database, station key and audit log in a temp dir.
func testEnv(t *testing.T) *Env {
	t.Helper()
	dir := t.TempDir()
	cfg := configs.Defaults()
	cfg.Dir = dir
	cfg.Station.ID = "line1-st03"
	cfg.Station.DB = filepath.Join(dir, "station.db")
	cfg.DPS.Line, cfg.DPS.Factory, cfg.Firmware.Version = "line1", "plant1", "2.0.1"
	cfg.DPS.IoTHubs, cfg.DPS.AllocationPolicy, cfg.DPS.IoTEdge = []string{"hub1.azure-devices.net"}, "hashed", true
	db, err := store.Create(cfg.Station.DB, dbOptions(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	signer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	l, err := audit.Open(db.DB, cfg.Station.ID, "test", signer)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Config: cfg, DB: db, Log: l, Signer: signer, Version: "test"}
}

func tpmUnit(serial string, i int) *store.Unit {
	ek := append([]byte{0, byte(len("ek-of-" + serial))}, "ek-of-"+serial...) // a TPM2B
	sum := sha256.Sum256(ek)
	return &store.Unit{Serial: serial, StationID: "line1-st03", Status: store.StatusProvisioned, Attestation: "tpm",
		RegistrationID: enroll.RegistrationID(ek), EKPublic: ek, EKSHA256: hex.EncodeToString(sum[:]),
		ProvisionedAt: t0.Add(time.Duration(i) * time.Minute)}
}

// auditEvents exports the audit log and returns its records' "event serial" pairs.
func auditEvents(t *testing.T, env *Env) []string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	if _, err := env.Log.Export(dir, audit.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, audit.FileRecordsJSONL))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct{ Event, Serial string }
		json.Unmarshal([]byte(line), &r)
		out = append(out, strings.TrimSpace(r.Event+" "+r.Serial))
	}
	return out
}

func TestExportRecordsAndSigns(t *testing.T) {
	env := testEnv(t)
	for i := range 12 {
		storetest.PutUnits(t, env.DB, tpmUnit(fmt.Sprintf("SN%03d", i), i))
	}
	out := filepath.Join(t.TempDir(), "bulk")
	res, err := Export(env, ExportOptions{Format: enroll.FormatBulk, Out: out, Operator: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 2 || res.Counts.Enrolled != 12 {
		t.Fatalf("result %+v", res)
	}
	m, err := enroll.VerifyExport(out, env.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if m.StationID != "line1-st03" {
		t.Fatalf("manifest station %q", m.StationID)
	}
	var op enroll.BulkOperation
	b, _ := os.ReadFile(filepath.Join(out, "0001.json"))
	json.Unmarshal(b, &op)
	e := op.Enrollments[0]
	if e.InitialTwin.Tags["firmwareVersion"] != "2.0.1" || e.InitialTwin.Tags["line"] != "line1" || !e.Capabilities.IoTEdge ||
		e.AllocationPolicy != "hashed" || e.IoTHubs[0] != "hub1.azure-devices.net" {
		t.Fatalf("config fields missing: %s", b)
	}
	ev := auditEvents(t, env)
	if !strings.Contains(strings.Join(ev, ","), "export") {
		t.Fatalf("no export record: %v", ev)
	}

	// The same export again: same enrollment bytes; the audit log grew.
	out2 := filepath.Join(t.TempDir(), "bulk")
	if _, err := Export(env, ExportOptions{Format: enroll.FormatBulk, Out: out2}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"0001.json", "0002.json", enroll.ManifestFile, enroll.SignatureFile} {
		a, _ := os.ReadFile(filepath.Join(out, f))
		b, _ := os.ReadFile(filepath.Join(out2, f))
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs between identical exports", f)
		}
	}
}

// A failing export leaves no files, no bookkeeping and no audit record.
func TestExportFailureLeavesNothing(t *testing.T) {
	env := testEnv(t)
	bad := tpmUnit("SN1", 0)
	bad.RegistrationID = "not-the-ek-one"
	storetest.PutUnits(t, env.DB, tpmUnit("SN0", 0), bad)
	out := filepath.Join(t.TempDir(), "bulk")
	_, err := Export(env, ExportOptions{Format: enroll.FormatBulk, Out: out})
	if !errors.Is(err, enroll.ErrIncomplete) || !strings.Contains(err.Error(), "SN1") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("files written by a failed export")
	}
	if ev := auditEvents(t, env); strings.Contains(strings.Join(ev, ","), "export ") || len(ev) != 1 {
		t.Fatalf("audit records of a failed export: %v", ev)
	}
}

func TestExportSecrets(t *testing.T) {
	env := testEnv(t)
	env.Config.DPS.Attestation, env.Config.DPS.RegistrationID = "symmetric-key", "{serial}"
	group := "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
	env.Config.DPS.GroupKey = "env:GROUP_KEY"
	getenv := func(n string) string {
		if n == "GROUP_KEY" {
			return group
		}
		return ""
	}
	storetest.PutUnits(t, env.DB, &store.Unit{Serial: "SN-007-888-ABC-MAC-A1-B2-C3-D4-E5-F6", Status: store.StatusProvisioned, Attestation: "symmetric-key",
		RegistrationID: "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", ProvisionedAt: t0})
	rcpt, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	out := filepath.Join(t.TempDir(), "secret")
	if _, err := Export(env, ExportOptions{Format: enroll.FormatIndividual, Out: out, IncludeSecrets: true, Getenv: getenv}); !errors.Is(err, enroll.ErrOptions) {
		t.Fatalf("secrets without an encryption key: %v", err)
	}
	if _, err := Export(env, ExportOptions{Format: enroll.FormatIndividual, Out: out, IncludeSecrets: true, EncryptTo: rcpt.Public(), Getenv: getenv}); err != nil {
		t.Fatal(err)
	}
	jwe, err := os.ReadFile(filepath.Join(out, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6.json.jwe"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := enroll.Decrypt(rcpt, jwe)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(plain, []byte(`"primaryKey": "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="`)) {
		t.Fatalf("derived key (reference vector 3) not in the enrollment: %s", plain)
	}
	// No key material in the audit log.
	dir := filepath.Join(t.TempDir(), "audit")
	env.Log.Export(dir, audit.ExportOptions{})
	recs, _ := os.ReadFile(filepath.Join(dir, audit.FileRecordsJSONL))
	if bytes.Contains(recs, []byte("Jsm0")) || bytes.Contains(recs, []byte(group[:12])) {
		t.Fatal("a key reached the audit log")
	}
	// A bad group key is refused without echoing it.
	env.Config.DPS.GroupKey = "env:NOPE"
	if _, err := GroupKey(env.Config, func(string) string { return "sekrit!!" }); err == nil || strings.Contains(err.Error(), "sekrit") {
		t.Fatalf("bad group key: %v", err)
	}
	kf := filepath.Join(t.TempDir(), "group.key")
	os.WriteFile(kf, []byte(group+"\n"), 0o600)
	env.Config.DPS.GroupKey = kf
	if k, err := GroupKey(env.Config, nil); err != nil || base64.StdEncoding.EncodeToString(k) != group {
		t.Fatalf("group key from file: %v", err)
	}
}

// newCA makes a self-signed CA and returns it with its key.
func newCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: t0, NotAfter: t0.Add(time.Hour * 24 * 3650),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}
