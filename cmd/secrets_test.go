package cmd

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/station"
)

// TestLockoutAuthNeverShown provisions a unit, recovers its lockout auth
// from the escrow with the escrow private key (which the station never
// holds), and looks for that value, in every usual encoding, in all that the
// station prints or writes for people: provision's output with --verbose,
// `units show` and `units list`, the audit export, the enrollment exports
// and the database file itself. It must appear nowhere.
func TestLockoutAuthNeverShown(t *testing.T) {
	l := newSimBatch(t, 1).line
	const serial = "SECRET-1"
	var seen bytes.Buffer
	collect := func(args ...string) {
		t.Helper()
		out, errOut, code := l.run(args...)
		if code != 0 {
			t.Fatalf("station %v: exit %d\n%s%s", args, code, out, errOut)
		}
		seen.WriteString(out + errOut)
	}
	collect("provision", "--serial", serial, "--tpm", "sim", "--verbose")
	collect("units", "show", serial)
	collect("-o", "json", "units", "show", serial)
	collect("units", "list")
	out := t.TempDir()
	collect("audit", "export", "--out", filepath.Join(out, "audit"))
	collect("enroll", "export", "--format", "dps-bulk", "--out", filepath.Join(out, "bulk"))
	collect("enroll", "export", "--format", "csv", "--out", filepath.Join(out, "units.csv"))
	files := 0
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		seen.Write(b)
		files++
		return err
	})
	if err != nil || files < 4 {
		t.Fatalf("reading the exports: %d files, %v", files, err)
	}
	db, err := os.ReadFile(filepath.Join(l.dir, "station.db"))
	if err != nil {
		t.Fatal(err)
	}
	seen.Write(db)

	u := l.unit(serial)
	if len(u.Escrows) != 1 || u.Escrows[0].Pending {
		t.Fatalf("escrows %+v, want one applied lockout escrow", u.Escrows)
	}
	secret, err := station.OpenEscrow(u.Escrows[0].JWE, escrowKey(t, l.dir), serial, "lockout")
	if err != nil || len(secret) != 32 {
		t.Fatalf("the escrowed lockout auth: %d bytes, %v", len(secret), err)
	}
	for name, enc := range map[string]string{
		"raw":             string(secret),
		"hex":             hex.EncodeToString(secret),
		"HEX":             strings.ToUpper(hex.EncodeToString(secret)),
		"base64":          base64.StdEncoding.EncodeToString(secret),
		"base64 unpadded": base64.RawStdEncoding.EncodeToString(secret),
		"base64url":       base64.URLEncoding.EncodeToString(secret),
		"base64url nopad": base64.RawURLEncoding.EncodeToString(secret),
	} {
		if bytes.Contains(seen.Bytes(), []byte(enc)) {
			t.Errorf("the lockout auth (%s) appears in the station's output, exports or database", name)
		}
	}
}
