package enroll

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/factory-id/station/enroll/regid"
	"github.com/factory-id/station/store"
)

// dpsFields is the DPS service schema (service.json 2021-10-01, as listed in
// the DPS service REST API reference, "Enrollment JSON"): every JSON path an
// enrollment may hold. "*" is any map key.
var dpsFields = map[string]bool{
	"registrationId": true, "deviceId": true, "etag": true, "enrollmentGroupId": true,
	"attestation": true, "attestation.type": true,
	"attestation.tpm": true, "attestation.tpm.endorsementKey": true, "attestation.tpm.storageRootKey": true,
	"attestation.x509":                    true,
	"attestation.x509.clientCertificates": true, "attestation.x509.clientCertificates.primary": true,
	"attestation.x509.clientCertificates.primary.certificate": true,
	"attestation.x509.signingCertificates":                    true, "attestation.x509.signingCertificates.primary": true,
	"attestation.x509.signingCertificates.primary.certificate": true,
	"attestation.symmetricKey":                                 true, "attestation.symmetricKey.primaryKey": true, "attestation.symmetricKey.secondaryKey": true,
	"capabilities": true, "capabilities.iotEdge": true,
	"iotHubs": true, "allocationPolicy": true,
	"initialTwin": true, "initialTwin.tags": true, "initialTwin.tags.*": true,
	"initialTwin.properties": true, "initialTwin.properties.desired": true,
	"provisioningStatus": true,
	"reprovisionPolicy":  true, "reprovisionPolicy.updateHubAssignment": true, "reprovisionPolicy.migrateDeviceData": true,
}

func jsonPaths(t *testing.T, prefix string, v any, out *[]string) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	for k, x := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
			if prefix == "initialTwin.tags" {
				p = prefix + ".*"
			}
		}
		*out = append(*out, p)
		jsonPaths(t, p, x, out)
	}
}

func fullProfile() *Profile {
	return &Profile{IoTHubs: []string{"hub1.azure-devices.net"}, AllocationPolicy: "hashed", IoTEdge: true,
		Factory: "plant1", Line: "line1", FirmwareVersion: "1.2.3"}
}

// Every enrollment kind uses only DPS field names, carries the required
// ones, and decodes back into the same value (strict decoding).
func TestSchemaRoundTrip(t *testing.T) {
	ca := newCA(t, "line1", nil)
	x := tpmUnit("SN1", "a", 0)
	x.Attestation, x.RegistrationID, x.EKPublic, x.SRKPublic = AttestX509, "sn1", nil, nil
	x.Cert = ca.leaf(t, "sn1")
	sym := &store.Unit{Serial: "SN2", Status: store.StatusProvisioned, Attestation: AttestSymmetricKey, RegistrationID: "sn2", DeviceID: "dev-sn2"}
	p := fullProfile()
	ps := *p
	ps.GroupKey = []byte("0123456789abcdef0123456789abcdef")
	var values []any
	for _, c := range []struct {
		p *Profile
		u *store.Unit
	}{{p, tpmUnit("SN0", "a", 0)}, {p, x}, {&ps, sym}} {
		e, err := c.p.Individual(c.u, false)
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, e, BulkOperation{Mode: ModeCreate, Enrollments: []IndividualEnrollment{*e}})
	}
	values = append(values, p.X509Group(ca.cert.Raw, true))
	g, err := ps.SymmetricGroup("grp")
	if err != nil {
		t.Fatal(err)
	}
	values = append(values, g)
	for _, v := range values {
		b, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var generic map[string]any
		if err := json.Unmarshal(b, &generic); err != nil {
			t.Fatal(err)
		}
		objs := []any{generic}
		if es, ok := generic["enrollments"].([]any); ok {
			if generic["mode"] != "create" || len(generic) != 2 {
				t.Fatalf("bulk operation keys: %v", generic)
			}
			objs = es
		}
		for _, o := range objs {
			var paths []string
			jsonPaths(t, "", o, &paths)
			for _, p := range paths {
				if !dpsFields[p] {
					t.Errorf("%T: %s is not a DPS field", v, p)
				}
			}
			m := o.(map[string]any)
			if m["registrationId"] == nil && m["enrollmentGroupId"] == nil || m["attestation"] == nil {
				t.Errorf("%T: required field missing: %s", v, b)
			}
			if !slices.Contains([]string{"tpm", "x509", "symmetricKey"}, m["attestation"].(map[string]any)["type"].(string)) {
				t.Errorf("attestation type %v", m["attestation"])
			}
		}
		// Strict round trip: same bytes back.
		back := newLike(v)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(back); err != nil {
			t.Fatal(err)
		}
		b2, _ := Marshal(back)
		if !bytes.Equal(b, b2) {
			t.Errorf("round trip changed %T:\n%s\n%s", v, b, b2)
		}
	}
}

func newLike(v any) any {
	switch v.(type) {
	case *IndividualEnrollment:
		return &IndividualEnrollment{}
	case BulkOperation:
		return &BulkOperation{}
	default:
		return &EnrollmentGroup{}
	}
}

// The TPM enrollment carries exactly the TPM2B_PUBLIC bytes the SDK sends,
// and the registration ID the SDK derives (vector 2 of the reference).
func TestTPMEnrollmentVector(t *testing.T) {
	b64, err := os.ReadFile("testdata/ek-sample.b64")
	if err != nil {
		t.Fatal(err)
	}
	ek, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	u := &store.Unit{Serial: "SN", Status: store.StatusProvisioned, Attestation: AttestTPM, EKPublic: ek}
	e, err := (&Profile{}).Individual(u, false)
	if err != nil {
		t.Fatal(err)
	}
	if e.Attestation.TPM.EndorsementKey != strings.TrimSpace(string(b64)) {
		t.Fatal("endorsementKey is not the TPM2B_PUBLIC base64")
	}
	if e.RegistrationID != "sizmf6sllrqe4op4wm576nl26la72rssxmf7i7oag2fbuy7uvbaq" {
		t.Fatalf("registrationId %s", e.RegistrationID)
	}
	if e.Attestation.TPM.StorageRootKey != "" {
		t.Fatal("storageRootKey without an SRK")
	}
	if e.InitialTwin.Tags[TagSerial] != "SN" || e.ProvisioningStatus != StatusEnabled {
		t.Fatalf("tags/status: %+v", e)
	}
	// A record whose registration ID is not the EK's is refused.
	u.RegistrationID = "someone-else"
	if _, err := (&Profile{}).Individual(u, false); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("mismatched registration ID: %v", err)
	}
}

func TestIndividualRefusals(t *testing.T) {
	mismatchedLeaf := newCA(t, "line", nil).leaf(t, "someone-else")
	tests := []struct {
		name     string
		u        store.Unit
		disabled bool
		want     error
	}{
		{"tpm-no-ek", store.Unit{Serial: "a", Attestation: AttestTPM}, false, ErrIncomplete},
		// go-tpm's legacy Encode() output: the TPMT_PUBLIC without its size.
		{"tpm-ek-without-size", store.Unit{Serial: "a", Attestation: AttestTPM, EKPublic: fakeEK("a")[2:]}, false, ErrIncomplete},
		{"tpm-ek-sha-mismatch", store.Unit{Serial: "a", Attestation: AttestTPM, EKPublic: fakeEK("a"), EKSHA256: "00"}, false, ErrIncomplete},
		{"tpm-srk-without-size", store.Unit{Serial: "a", Attestation: AttestTPM, EKPublic: fakeEK("a"), SRKPublic: []byte{0, 9, 1}}, false, ErrIncomplete},
		{"x509-garbage-cert", store.Unit{Serial: "a", Attestation: AttestX509, RegistrationID: "a", Cert: []byte{0x30, 1}}, false, ErrIncomplete},
		{"x509-cn-mismatch", store.Unit{Serial: "a", Attestation: AttestX509, RegistrationID: "a", Cert: mismatchedLeaf}, false, ErrIncomplete},
		{"x509-no-cert", store.Unit{Serial: "a", Attestation: AttestX509, RegistrationID: "a"}, false, ErrIncomplete},
		{"sym-enabled-no-key", store.Unit{Serial: "a", Attestation: AttestSymmetricKey, RegistrationID: "a"}, false, ErrSecretsNeeded},
		{"sym-disabled-ok", store.Unit{Serial: "a", Attestation: AttestSymmetricKey, RegistrationID: "a"}, true, nil},
		{"sym-no-regid", store.Unit{Serial: "a", Attestation: AttestSymmetricKey}, true, ErrIncomplete},
		{"bad-regid", store.Unit{Serial: "a", Attestation: AttestSymmetricKey, RegistrationID: "-bad"}, true, regid.ErrInvalid},
		{"unknown", store.Unit{Serial: "a", Attestation: "psk"}, false, ErrIncomplete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := (&Profile{}).Individual(&tc.u, tc.disabled)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && (e.ProvisioningStatus != StatusDisabled || e.Attestation.SymmetricKey.PrimaryKey != "") {
				t.Fatalf("disabled symmetric enrollment: %+v", e)
			}
		})
	}
}

// Vector 3 of the reference: the derived key in a secret enrollment.
func TestSymmetricDerivedKeyVector(t *testing.T) {
	group, _ := base64.StdEncoding.DecodeString("8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==")
	u := &store.Unit{Serial: "SN7", Attestation: AttestSymmetricKey, RegistrationID: "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"}
	e, err := (&Profile{GroupKey: group}).Individual(u, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Attestation.SymmetricKey.PrimaryKey; got != "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=" {
		t.Fatalf("primaryKey = %s", got)
	}
}

// The fast layouts (compact once, indent into place) are byte for byte what
// Marshal gives: the files do not depend on the code path.
func TestLayoutsMatchMarshal(t *testing.T) {
	p := fullProfile()
	for n := 0; n <= MaxBulk; n++ {
		var es []IndividualEnrollment
		var cs [][]byte
		for i := range n {
			e, err := p.Individual(tpmUnit(fmt.Sprint("SN<&>", i), fmt.Sprint(i), i), i%2 == 0)
			if err != nil {
				t.Fatal(err)
			}
			es = append(es, *e)
			c, _ := compact(e)
			cs = append(cs, c)
			want, _ := Marshal(e)
			if got, _ := indent(c); !bytes.Equal(got, want) {
				t.Fatalf("indent:\n%s\nwant\n%s", got, want)
			}
		}
		for _, mode := range []string{ModeCreate, ModeUpdate} {
			want, _ := Marshal(BulkOperation{Mode: mode, Enrollments: es})
			if n == 0 {
				want, _ = Marshal(BulkOperation{Mode: mode, Enrollments: []IndividualEnrollment{}})
			}
			var buf bytes.Buffer
			got, err := bulkJSON(&buf, mode, cs)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%d enrollments: %v\n%s\nwant\n%s", n, err, got, want)
			}
		}
	}
}
