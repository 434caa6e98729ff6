package enroll

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/enroll/regid"
)

// The DPS derivation vectors (as the Azure DPS documentation gives them), recomputed there
// independently of this code.
func TestRegistrationIDVectors(t *testing.T) {
	sample, err := os.ReadFile("testdata/ek-sample.b64")
	if err != nil {
		t.Fatal(err)
	}
	ek, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sample)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ek   []byte
		want string
	}{
		{"node-sdk-stub", []byte("registration"), "fhe4gdqgarivz3mywpiu7wehkguprzfzxru5ja5gpisxyfflph5q"},
		{"c-sdk-sample-ek", ek, "sizmf6sllrqe4op4wm576nl26la72rssxmf7i7oag2fbuy7uvbaq"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RegistrationID(tc.ek)
			if got != tc.want {
				t.Fatalf("RegistrationID = %s, want %s", got, tc.want)
			}
			if err := regid.Validate(got, true); err != nil {
				t.Fatal(err)
			}
		})
	}
	if len(ek) != 316 || !strings.HasPrefix(string(sample), "AToAAQALAAMAsgAgg3GX") {
		t.Fatalf("sample EK: %d bytes, want the 316-byte TPM2B_PUBLIC of an RSA-2048 EK", len(ek))
	}
}

func TestDeriveDeviceKeyAndSAS(t *testing.T) {
	group, _ := base64.StdEncoding.DecodeString("8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==")
	const regID = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
	key, err := DeviceKey(group, regID)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.StdEncoding.EncodeToString(key); got != "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=" {
		t.Fatalf("derived key = %s", got)
	}
	sr, toSign := SASStringToSign("0ne00002193", regID, 1578941692)
	if want := "0ne00002193%2fregistrations%2fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6\n1578941692"; toSign != want {
		t.Fatalf("string to sign = %q, want %q", toSign, want)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(toSign))
	sig := m.Sum(nil)
	if got := base64.StdEncoding.EncodeToString(sig); got != "v6f2+qZFcOJ3uLkND1h2zWV5jp3CANlKO0dt+O9Ekek=" {
		t.Fatalf("sig = %s", got)
	}
	tok := SASToken(sr, sig, 1578941692)
	if want := "SharedAccessSignature sr=0ne00002193%2fregistrations%2fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6&sig=v6f2%2BqZFcOJ3uLkND1h2zWV5jp3CANlKO0dt%2BO9Ekek%3D&se=1578941692&skn=registration"; tok != want {
		t.Fatalf("token = %s", tok)
	}
}

func TestExpandPattern(t *testing.T) {
	got, err := ExpandPattern("{factory}-{serial}", map[string]string{"factory": "Plant1", "serial": "SN42"}, true)
	if err != nil || got != "plant1-sn42" {
		t.Fatalf("ExpandPattern = %q, %v", got, err)
	}
	if _, err := ExpandPattern("{nope}", nil, true); err == nil {
		t.Fatal("unknown placeholder accepted")
	}
}

// The group key of the symmetric-key vector above, base64.
const vecGroupKey = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="

func TestLoadGroupKeyAndDerive(t *testing.T) {
	const regID, devKey = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
	dir := t.TempDir()
	file := filepath.Join(dir, "group.key")
	if err := os.WriteFile(file, []byte(vecGroupKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GK": vecGroupKey}
	for _, ref := range []string{"env:GK", file} {
		gk, err := LoadGroupKey(ref, func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		dk, err := DeviceKey(gk, regID)
		if err != nil {
			t.Fatal(err)
		}
		if got := base64.StdEncoding.EncodeToString(dk); got != devKey {
			t.Fatalf("%s: device key %s, want %s", ref, got, devKey)
		}
		// Two units never share a key.
		dk2, _ := DeviceKey(gk, regID+"0")
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
	if err := os.WriteFile(file, []byte(short), 0o600); err != nil {
		t.Fatal(err)
	}
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

func TestDeviceKeyRefusals(t *testing.T) {
	gk, _ := base64.StdEncoding.DecodeString(vecGroupKey)
	if err := checkDeviceKey(gk, gk); !errors.Is(err, ErrGroupKey) {
		t.Fatalf("group key as device key: %v", err)
	}
	if err := checkDeviceKey(gk, nil); !errors.Is(err, ErrGroupKey) {
		t.Fatalf("empty device key: %v", err)
	}
	if _, err := DeviceKey(gk[:10], "sn-1"); !errors.Is(err, ErrGroupKey) {
		t.Fatalf("short group key: %v", err)
	}
	if _, err := DeviceKey(append(gk, 0), "sn-1"); !errors.Is(err, ErrGroupKey) {
		t.Fatalf("65-byte group key: %v", err)
	}
	if _, err := DeviceKey(gk, "SN 1"); !errors.Is(err, regid.ErrInvalid) {
		t.Fatalf("invalid registration ID: %v", err)
	}
}

// TestRegistrationPattern: a pattern without {serial} would give every unit
// one ID (and, with symmetric-key, one device key); an unknown attestation
// type is refused.
func TestRegistrationPattern(t *testing.T) {
	for _, att := range []string{AttestX509, AttestSymmetricKey} {
		if err := CheckRegistrationPattern(att, "line1-unit"); err == nil || !strings.Contains(err.Error(), "does not contain {serial}") {
			t.Fatalf("%s: pattern without {serial}: %v", att, err)
		}
		if err := CheckRegistrationPattern(att, ""); err == nil || !strings.Contains(err.Error(), "is needed") {
			t.Fatalf("%s: no pattern: %v", att, err)
		}
		if err := CheckRegistrationPattern(att, "{factory}-{serial}"); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckRegistrationPattern(AttestTPM, ""); err != nil {
		t.Fatalf("tpm needs no pattern: %v", err)
	}
	for _, att := range []string{"none", "", "TPM", "symmetricKey"} {
		if err := CheckRegistrationPattern(att, "{serial}"); err == nil || !strings.Contains(err.Error(), "want tpm, x509 or symmetric-key") {
			t.Fatalf("unknown attestation %q: %v", att, err)
		}
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
		{AttestTPM, "ignored-{serial}", vars, []byte("registration"), "fhe4gdqgarivz3mywpiu7wehkguprzfzxru5ja5gpisxyfflph5q", nil},
		{AttestTPM, "", vars, nil, "", errAny},
		{AttestX509, "{factory}-{line}-{serial}", vars, nil, "fab1-l2-sn-0042", nil},
		{AttestSymmetricKey, "{serial}", vars, nil, "sn-0042", nil},
		{AttestX509, "{serial}", map[string]string{"serial": "SN 42"}, nil, "", regid.ErrInvalid},
		{AttestX509, strings.Repeat("x", 60) + "{serial}", vars, nil, "", regid.ErrInvalid},
		{AttestSymmetricKey, strings.Repeat("x", 60) + "{serial}", vars, nil, "", regid.ErrInvalid}, // the CN rule holds for every type
		{AttestX509, "{serial}-{nope}", vars, nil, "", errAny},
		{AttestX509, "{serial}", map[string]string{}, nil, "", errAny},
		{AttestX509, "fixed", vars, nil, "", errAny},
		{"none", "{serial}", vars, nil, "", errAny},
	}
	for _, tc := range tests {
		got, err := RegistrationIDFor(tc.att, tc.pattern, tc.vars, tc.ek)
		switch {
		case tc.target == errAny && err == nil, tc.target != nil && tc.target != errAny && !errors.Is(err, tc.target):
			t.Errorf("%s %q: %q, %v; want an error (%v)", tc.att, tc.pattern, got, err, tc.target)
		case tc.target == nil && (err != nil || got != tc.want):
			t.Errorf("%s %q: %q, %v; want %q", tc.att, tc.pattern, got, err, tc.want)
		}
	}
}

// errAny stands for "any error" in a test table.
var errAny = errors.New("any error")
