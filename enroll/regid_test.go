package enroll

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"strings"
	"testing"
)

// The vectors of ../shared/reference/dps-and-tcg.md, recomputed there
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
			if err := ValidateRegistrationID(got, true); err != nil {
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
	key := DeriveDeviceKey(group, regID)
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

func TestRegistrationIDRules(t *testing.T) {
	tests := []struct {
		id   string
		x509 bool
		ok   bool
	}{
		{"unit-0001", true, true},
		{"a", true, true},
		{"-lead", false, false},
		{"trail.", false, false},
		{"UPPER", false, false},
		{"sp ace", false, false},
		{strings.Repeat("a", 64), true, true},
		{strings.Repeat("a", 65), true, false},
		{strings.Repeat("a", 128), false, true},
		{strings.Repeat("a", 129), false, false},
	}
	for _, tc := range tests {
		if err := ValidateRegistrationID(tc.id, tc.x509); (err == nil) != tc.ok {
			t.Errorf("ValidateRegistrationID(%q, %v) = %v, want ok=%v", tc.id, tc.x509, err, tc.ok)
		}
	}
	got, err := ExpandPattern("{factory}-{serial}", map[string]string{"factory": "Plant1", "serial": "SN42"}, true)
	if err != nil || got != "plant1-sn42" {
		t.Fatalf("ExpandPattern = %q, %v", got, err)
	}
	if _, err := ExpandPattern("{nope}", nil, true); err == nil {
		t.Fatal("unknown placeholder accepted")
	}
}
