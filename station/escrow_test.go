package station

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
)

// TestVerifyChecksEscrow swaps a provisioned unit's lockout escrow in the
// database for what an attacker with write access could put there; verify
// must fail the ownership check every time, and pass the untouched unit.
func TestVerifyChecksEscrow(t *testing.T) {
	first := swtpmtest.Start(t, swtpmtest.Options{})
	l := newTestLine(t, trustSwtpm(t, first.CA))
	other := l.provisionSwtpm(t, "ESC-OTHER")
	v := l.provisionSwtpm(t, "ESC-0001")
	good := escrowOf(v.u, "lockout").JWE

	esc, err := LoadEscrower(l.cfg.File(configs.KeyEscrowKey))
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	forged, err := esc.Seal(v.u.Serial, "lockout", secret) // right unit, right key: only the audit log knows
	if err != nil {
		t.Fatal(err)
	}
	wrongHierarchy, _ := esc.Seal(v.u.Serial, "owner", secret)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	otherKeyFile := filepath.Join(t.TempDir(), "other-escrow.pub.pem")
	os.WriteFile(otherKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	otherEsc, err := LoadEscrower(otherKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := otherEsc.Seal(v.u.Serial, "lockout", secret)
	parts := strings.Split(good, ".")
	truncated := strings.Join(append(slices.Clone(parts[:3]), parts[3][:20], parts[4]), ".")

	tests := []struct {
		name, jwe, want string
		record          bool // the record check fails too (no escrow at all)
	}{
		{"untouched", good, "", false},
		{"another unit's escrow", escrowOf(other.u, "lockout").JWE, "escrow of unit ESC-OTHER", false},
		{"garbage", "not-a-jwe", "not a compact JWE", false},
		{"empty", "", "not a compact JWE", true},
		{"the owner escrow's header", wrongHierarchy, "owner auth; not unit ESC-0001, lockout auth", false},
		{"encrypted to another escrow key", otherKey, "encrypted to another key", false},
		{"ciphertext cut short", truncated, "ciphertext", false},
		{"forged with the escrow public key", forged, "not the escrow the audit log recorded", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setEscrow(t, l, v.u.Serial, tc.jwe)
			rep, err := v.verify(t)
			c := findCheck(rep, CheckOwnership)
			t.Logf("ownership: %v %s", c.Passed, c.Detail)
			if tc.want == "" {
				if err != nil || !rep.Passed {
					t.Fatalf("untouched unit: %v, failed %v", err, rep.Failed())
				}
				return
			}
			if !errors.Is(err, ErrVerifyFailed) || c.Passed || !strings.Contains(c.Detail, tc.want) {
				t.Fatalf("verify = %v; ownership passed=%v %q, want it failed with %q", err, c.Passed, c.Detail, tc.want)
			}
			want := []string{CheckOwnership}
			if tc.record {
				want = []string{CheckRecord, CheckOwnership}
			}
			if got := rep.Failed(); !slices.Equal(got, want) {
				t.Errorf("failed checks %v, want %v", got, want)
			}
		})
	}
	setEscrow(t, l, v.u.Serial, good)
}

func setEscrow(t *testing.T, l *testLine, serial, jwe string) {
	t.Helper()
	err := l.env.DB.Update(func(tx *bolt.Tx) error {
		u, err := store.GetUnit(tx, serial)
		if err != nil {
			return err
		}
		escrowOf(u, "lockout").JWE = jwe
		return store.PutUnit(tx, u)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func findCheck(rep *VerifyReport, name string) Check {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	return Check{Name: name}
}

// FuzzEscrowCheck: whatever the database holds as an escrow, Check answers
// without panicking, and accepts only what names the unit and hierarchy.
func FuzzEscrowCheck(f *testing.F) {
	pub := filepath.Join(f.TempDir(), "escrow.pub.pem")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	esc, err := LoadEscrower(pub)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := esc.Seal("SN-1", "lockout", make([]byte, 32))
	f.Add(good)
	f.Add("a.b.c.d.e")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Fuzz(func(t *testing.T, jwe string) {
		if esc.Check(jwe, "SN-1", "lockout") == nil && !strings.Contains(jwe, ".") {
			t.Fatalf("accepted %q", jwe)
		}
	})
}
