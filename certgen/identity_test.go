package certgen

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/enroll"
)

// The vector of dps-and-tcg.md (test vector 3).
const (
	vecGroupKey = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
	vecRegID    = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
	vecDevKey   = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
)

func TestLoadGroupKeyAndDerive(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "group.key")
	os.WriteFile(file, []byte(vecGroupKey+"\n"), 0o600)
	env := map[string]string{"GK": vecGroupKey}
	for _, ref := range []string{"env:GK", file} {
		gk, err := LoadGroupKey(ref, func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		dk, err := DeviceKey(gk, vecRegID)
		if err != nil {
			t.Fatal(err)
		}
		if got := base64.StdEncoding.EncodeToString(dk); got != vecDevKey {
			t.Fatalf("%s: device key %s, want %s", ref, got, vecDevKey)
		}
		// Two units never share a key.
		dk2, _ := DeviceKey(gk, vecRegID+"0")
		if string(dk2) == string(dk) {
			t.Fatal("two registration IDs, one key")
		}
	}
}

func TestLoadGroupKeyRefusals(t *testing.T) {
	dir := t.TempDir()
	short := base64.StdEncoding.EncodeToString([]byte("fifteen bytes!!"))
	long := base64.StdEncoding.EncodeToString(make([]byte, 65))
	env := map[string]string{"SHORT": short, "LONG": long, "BAD": "not base64 at all!", "EMPTY": ""}
	file := filepath.Join(dir, "short.key")
	os.WriteFile(file, []byte(short), 0o600)
	tests := []struct{ ref, want string }{
		{"", "not configured"},
		{"env:", "names no variable"},
		{"env:MISSING", "$MISSING is not set"},
		{"env:EMPTY", "is not set"},
		{"env:SHORT", "holds 15 bytes"},
		{"env:LONG", "holds 65 bytes"},
		{"env:BAD", "does not hold base64"},
		{file, "holds 15 bytes"},
		{filepath.Join(dir, "absent"), "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			_, err := LoadGroupKey(tc.ref, func(k string) string { return env[k] })
			if !errors.Is(err, ErrGroupKey) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrGroupKey saying %q", err, tc.want)
			}
			for _, secret := range []string{short, long} {
				if strings.Contains(err.Error(), secret) {
					t.Fatal("key material in the error")
				}
			}
		})
	}
}

func TestSameKeyForEveryUnitRefused(t *testing.T) {
	gk, _ := base64.StdEncoding.DecodeString(vecGroupKey)
	if err := CheckDeviceKey(gk, gk); !errors.Is(err, ErrPolicy) {
		t.Fatalf("group key as device key: %v", err)
	}
	if err := CheckDeviceKey(gk, nil); !errors.Is(err, ErrPolicy) {
		t.Fatalf("empty device key: %v", err)
	}
	for _, att := range []string{AttestX509, AttestSymmetricKey} {
		if err := CheckRegistrationPattern(att, "line1-unit"); !errors.Is(err, ErrPolicy) {
			t.Fatalf("%s: pattern without {serial}: %v", att, err)
		}
		if err := CheckRegistrationPattern(att, "{factory}-{serial}"); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckRegistrationPattern("none", "{serial}"); !errors.Is(err, ErrPolicy) {
		t.Fatalf("unknown attestation: %v", err)
	}
	if _, err := DeviceKey(gk[:10], vecRegID); !errors.Is(err, ErrGroupKey) {
		t.Fatalf("short group key: %v", err)
	}
}

func TestRegistrationIDFor(t *testing.T) {
	vars := map[string]string{"serial": "SN-0042", "factory": "Fab1", "line": "l2"}
	tests := []struct {
		att, pattern string
		vars         map[string]string
		ek           []byte
		want         string
		target       error
	}{
		{AttestTPM, "", vars, []byte("registration"), "fhe4gdqgarivz3mywpiu7wehkguprzfzxru5ja5gpisxyfflph5q", nil},
		{AttestTPM, "", vars, nil, "", ErrPolicy},
		{AttestX509, "{factory}-{line}-{serial}", vars, nil, "fab1-l2-sn-0042", nil},
		{AttestSymmetricKey, "{serial}", vars, nil, "sn-0042", nil},
		{AttestX509, "{serial}", map[string]string{"serial": "SN 42"}, nil, "", enroll.ErrRegistrationID},
		{AttestX509, strings.Repeat("x", 60) + "{serial}", vars, nil, "", enroll.ErrRegistrationID},
		{AttestX509, "{serial}-{nope}", vars, nil, "", ErrPolicy},
		{AttestX509, "{serial}", map[string]string{}, nil, "", ErrPolicy},
		{AttestX509, "fixed", vars, nil, "", ErrPolicy},
	}
	for _, tc := range tests {
		got, err := RegistrationIDFor(tc.att, tc.pattern, tc.vars, tc.ek)
		if tc.target != nil {
			if !errors.Is(err, tc.target) || !errors.Is(err, ErrPolicy) {
				t.Errorf("%s %q: err = %v, want %v and ErrPolicy", tc.att, tc.pattern, err, tc.target)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %q: %q, %v; want %q", tc.att, tc.pattern, got, err, tc.want)
		}
	}
}

func TestRedactURI(t *testing.T) {
	for in, want := range map[string]string{
		"pkcs11:token=t;id=%01;object=k?pin-value=s3cret":         "pkcs11:token=t;id=%01;object=k?pin-value=REDACTED",
		"pkcs11:token=t;pin-value=s3cret;object=k":                "pkcs11:token=t;pin-value=REDACTED;object=k",
		"pkcs11:token=t;object=k?pin-source=/run/pin&pin-value=x": "pkcs11:token=t;object=k?pin-source=/run/pin&pin-value=REDACTED",
		"softkms:path=/a/b.key":                                   "softkms:path=/a/b.key",
	} {
		if got := RedactURI(in); got != want {
			t.Errorf("RedactURI(%q) = %q, want %q", in, got, want)
		}
	}
}
