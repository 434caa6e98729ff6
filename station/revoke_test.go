package station

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/storetest"
	"github.com/factory-id/station/store"
)

// The whole flow: export, revoke a unit and an intermediate, export the
// delta: the revoked units come out update/disabled, the CA as a disabled
// group, and every step is in the audit log.
func TestRevocationFlow(t *testing.T) {
	env := testEnv(t)
	line, _ := newCA(t, "line1")
	old, _ := newCA(t, "old-line")
	lineFile := filepath.Join(env.Config.Dir, "line.crt")
	os.WriteFile(lineFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: line.Raw}), 0o644)
	env.Config.PKI.IssuerCert = "line.crt"
	var us []*store.Unit
	for i, s := range []string{"SN1", "SN2", "SN3", "SN4"} {
		u := tpmUnit(s, i)
		u.Chain = [][]byte{line.Raw}
		if s == "SN3" || s == "SN4" {
			u.Chain = [][]byte{old.Raw}
		}
		us = append(us, u)
	}
	storetest.PutUnits(t, env.DB, us...)
	dir := t.TempDir()
	if _, err := Export(env, ExportOptions{Format: enroll.FormatBulk, Out: filepath.Join(dir, "full")}); err != nil {
		t.Fatal(err)
	}

	if _, err := Revoke(env, RevokeOptions{Serial: "SN1", Reason: "returned, tampered", Operator: "bob"}); err != nil {
		t.Fatal(err)
	}
	again, err := Revoke(env, RevokeOptions{Serial: "SN1", Reason: "again"})
	if err != nil || !again.Already {
		t.Fatalf("second revocation: %+v %v", again, err)
	}
	res, err := Revoke(env, RevokeOptions{CA: old, Reason: "key leaked", Operator: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.CA.Units, []string{"SN3", "SN4"}) || res.CA.GroupID != enroll.GroupID(old.Raw) {
		t.Fatalf("CA revocation %+v", res.CA)
	}

	delta := filepath.Join(dir, "delta")
	er, err := Export(env, ExportOptions{Format: enroll.FormatBulk, Out: delta, OnlyNew: true})
	if err != nil {
		t.Fatal(err)
	}
	if er.Counts.Update != 3 || er.Counts.Disabled != 3 || er.Counts.Enrolled != 3 {
		t.Fatalf("delta %+v", er.Counts)
	}
	var op enroll.BulkOperation
	b, _ := os.ReadFile(filepath.Join(delta, "0001.json"))
	json.Unmarshal(b, &op)
	if op.Mode != enroll.ModeUpdate || len(op.Enrollments) != 3 {
		t.Fatalf("delta op: %s", b)
	}
	for _, e := range op.Enrollments {
		if e.ProvisioningStatus != enroll.StatusDisabled {
			t.Fatalf("%s not disabled", e.RegistrationID)
		}
	}

	groups := filepath.Join(dir, "groups")
	gr, err := Export(env, ExportOptions{Format: enroll.FormatGroup, Out: groups})
	if err != nil {
		t.Fatal(err)
	}
	if gr.Counts.Groups != 2 || gr.Counts.Disabled != 1 {
		t.Fatalf("groups %+v", gr.Counts)
	}
	var g enroll.EnrollmentGroup
	b, err = os.ReadFile(filepath.Join(groups, enroll.GroupID(old.Raw)+".json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &g)
	if g.ProvisioningStatus != enroll.StatusDisabled {
		t.Fatalf("revoked CA group: %s", b)
	}

	ev := strings.Join(auditEvents(t, env), ",")
	for _, want := range []string{"revoke SN1", "revoke,", "revoke SN3", "revoke SN4", "export"} {
		if !strings.Contains(ev, want) {
			t.Errorf("audit log lacks %q: %s", want, ev)
		}
	}
	if strings.Count(ev, "revoke SN1") != 1 {
		t.Errorf("idempotent revoke recorded twice: %s", ev)
	}
}

func TestRevokeRefusals(t *testing.T) {
	env := testEnv(t)
	ca, _ := newCA(t, "x")
	tests := []struct {
		name string
		o    RevokeOptions
		want error
	}{
		{"neither", RevokeOptions{Reason: "r"}, ErrRevokeTarget},
		{"both", RevokeOptions{Serial: "a", CA: ca, Reason: "r"}, ErrRevokeTarget},
		{"no-reason", RevokeOptions{Serial: "a"}, ErrRevokeTarget},
		{"unknown-unit", RevokeOptions{Serial: "nope", Reason: "r"}, store.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Revoke(env, tc.o); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}
