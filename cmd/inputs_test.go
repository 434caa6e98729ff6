package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/tpmops"
)

// variant writes a copy of the line's config with one replacement, in the
// same folder (relative paths resolve the same way).
func (l *line) variant(t *testing.T, name, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(l.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("config has no %q", old)
	}
	p := filepath.Join(l.dir, name+".yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadInputsChangeNothing gives provision a bad config value, a bad
// environment or a bad address: each is exit 2 naming what to fix, before
// the unit's TPM is touched (same persistent handles and auth bits after)
// and before the unit is recorded.
func TestBadInputsChangeNothing(t *testing.T) {
	vendor := swtpmVendor(t)
	l := newLine(t, vendor)
	inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	unitDir := filepath.Join(l.dir, "units", "IN-1")
	os.MkdirAll(unitDir, 0o755)
	before := readTPMState(t, inst.Addr)

	cases := []struct {
		name   string
		args   []string // before "provision ..."
		env    []string
		stderr []string
	}{
		{"empty id_scope", []string{"--config", l.variant(t, "noscope", "id_scope: 0ne00000000", `id_scope: ""`)}, nil,
			[]string{"config dps.id_scope: not set"}},
		{"malformed id_scope", []string{"--config", l.variant(t, "badscope", "id_scope: 0ne00000000", `id_scope: "0ne 0000"`)}, nil,
			[]string{"config dps.id_scope", "not a DPS ID scope"}},
		{"control character in firmware.version", []string{"--config", l.variant(t, "badversion", "version: demo-1.0", `version: "demo\a1.0"`)}, nil,
			[]string{"config firmware.version", "control character"}},
		{"malformed global endpoint", []string{"--config", l.variant(t, "badendpoint", "global_endpoint: global.azure-devices-provisioning.net", `global_endpoint: "https://global.azure-devices-provisioning.net/"`)}, nil,
			[]string{"config dps.global_endpoint", "not a host name"}},
		{"empty config file", []string{"--config", l.variant(t, "empty", string(must(os.ReadFile(l.config))), "")}, nil,
			[]string{"the file is empty"}},
		{"second YAML document", []string{"--config", l.variant(t, "twodocs", "flash:", "---\nflash:")}, nil,
			[]string{"more than one YAML document"}},
		{"misspelt STATION_ variable", nil, []string{"STATION_TPM_ADRESS=" + inst.Addr},
			[]string{"$STATION_TPM_ADRESS", "did you mean $STATION_TPM_ADDRESS"}},
		{"issuer dies before the warehouse period ends", nil, []string{"STATION_PKI_WAREHOUSE=175200h"},
			[]string{"config pki.issuer_cert", "before the warehouse period ends", "hint: issue a new line intermediate"}},
		{"malformed tpm.address", nil, []string{"STATION_TPM_ADDRESS=swtpm://127.0.0.1"},
			[]string{"config tpm.address", "bad TPM address"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			saved := l.env
			l.env = append(slices.Clone(l.env), tc.env...)
			defer func() { l.env = saved }()
			args := append(tc.args, "provision", "--serial", "IN-1", "--tpm", inst.Addr, "--flash", "dir:"+unitDir)
			out, errOut, code := l.run(args...)
			if code != ExitUsage {
				t.Fatalf("exit %d, want 2\n%s%s", code, out, errOut)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
			if strings.Contains(errOut, "resumes") {
				t.Errorf("a configuration error promises a resume:\n%s", errOut)
			}
			if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
				t.Fatalf("the TPM changed: %s", d)
			}
		})
	}

	// A malformed --tpm is a usage error, not "it resumes at step ek".
	out, errOut, code := l.run("provision", "--serial", "IN-1", "--tpm", "swtpm://nohost", "--flash", "dir:"+unitDir)
	if code != ExitUsage || !strings.Contains(errOut, "bad TPM address") || strings.Contains(errOut, "resumes") {
		t.Errorf("malformed --tpm: exit %d\n%s%s", code, out, errOut)
	}
	// Nothing recorded for the unit by any of these.
	if out, _, _ := l.run("units", "list"); strings.Contains(out, "IN-1") {
		t.Errorf("IN-1 recorded:\n%s", out)
	}
	// And with the good config the same unit on the same TPM passes.
	if out, errOut, code := l.run("provision", "--serial", "IN-1", "--tpm", inst.Addr, "--flash", "dir:"+unitDir); code != 0 {
		t.Fatalf("good config: exit %d\n%s%s", code, out, errOut)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// auditRecords exports the audit trail and returns its records of serial.
func (l *line) auditRecords(t *testing.T, serial string) []map[string]any {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "trail")
	if _, errOut, code := l.run("audit", "export", "--out", dir); code != 0 {
		t.Fatalf("audit export: exit %d: %s", code, errOut)
	}
	b, err := os.ReadFile(filepath.Join(dir, "records.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r["serial"] == serial {
			out = append(out, r)
		}
	}
	return out
}

// TestFailedAttemptsAudited: a TPM that cannot be reached and a step that
// fails are audit records with how long they took; `units show` prints the
// failed step's real duration.
func TestFailedAttemptsAudited(t *testing.T) {
	vendor := swtpmVendor(t)
	l := newLine(t, vendor)

	// Unreachable: exit 5, and the attempt is in the log.
	_, errOut, code := l.run("provision", "--serial", "GONE-1", "--tpm", "swtpm://127.0.0.1:1")
	if code != ExitEnvironment {
		t.Fatalf("unreachable TPM: exit %d\n%s", code, errOut)
	}
	recs := l.auditRecords(t, "GONE-1")
	if len(recs) != 1 || recs[0]["event"] != "provision.failed" {
		t.Fatalf("audit records of GONE-1: %v", recs)
	}
	payload, _ := recs[0]["payload"].(map[string]any)
	if ms, ok := payload["ms"].(float64); !ok || ms <= 0 || payload["step"] != "ek" || payload["cause"] != "tpm-unreachable" || !strings.Contains(payload["error"].(string), "unreachable") {
		t.Errorf("failed attempt record: %v", payload)
	}

	// A step that fails (the flash target is a file, not a folder): the
	// journal and the audit record carry the step's real duration.
	inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o600)
	_, errOut, code = l.run("provision", "--serial", "FLASHFAIL-1", "--tpm", inst.Addr, "--flash", "dir:"+notDir)
	if code == 0 {
		t.Fatal("flash to a file passed")
	}
	out, _, _ := l.run("units", "show", "FLASHFAIL-1")
	if !strings.Contains(out, "step flash\tfailed in") && !strings.Contains(out, "failed in") {
		t.Fatalf("units show:\n%s\n(provision said %s)", out, errOut)
	}
	if strings.Contains(out, "failed in 0.0 ms") {
		t.Errorf("failed step shows no duration:\n%s", out)
	}
	var failed map[string]any
	for _, r := range l.auditRecords(t, "FLASHFAIL-1") {
		if r["event"] == "provision.failed" {
			failed, _ = r["payload"].(map[string]any)
		}
	}
	if ms, ok := failed["ms"].(float64); !ok || ms <= 0 {
		t.Errorf("failed step's audit record: %v", failed)
	}
}

// TestLockoutNotRetryable: a TPM in dictionary-attack lockout is refused
// before anything changes, with exit 3 and "do not retry" (never exit 5,
// "retryable", with advice not to retry).
func TestLockoutNotRetryable(t *testing.T) {
	vendor := swtpmVendor(t)
	l := newLine(t, vendor)
	inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	lockOut(t, inst.Addr)
	before := readTPMState(t, inst.Addr)
	if before.Variable[tpm2.TPMPTPermanent]&(1<<9) == 0 { // TPMA_PERMANENT inLockout
		t.Fatal("the TPM is not in lockout")
	}
	_, errOut, code := l.run("provision", "--serial", "DA-1", "--tpm", inst.Addr)
	if code != ExitPolicy || !strings.Contains(errOut, "dictionary-attack lockout") || !strings.Contains(errOut, "do not retry") {
		t.Fatalf("provision in lockout: exit %d, want 3 and 'do not retry'\n%s", code, errOut)
	}
	out, _, _ := l.run("-o", "json", "provision", "--serial", "DA-1", "--tpm", inst.Addr)
	if !strings.Contains(out, `"exit_code":3`) {
		t.Errorf("-o json: %s", out)
	}
	if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
		t.Fatalf("the TPM changed: %s", d)
	}
}

// lockOut drives a fresh TPM into dictionary-attack lockout: one allowed
// failure, then a wrong password on a DA-protected key.
func lockOut(t *testing.T, addr string) {
	t.Helper()
	tp := openTPM(t, addr)
	defer tp.Close()
	if err := tp.SetDAParams(nil, tpmops.DAParams{MaxTries: 1, RecoverySeconds: 3600, LockoutRecoverySeconds: 3600}); err != nil {
		t.Fatal(err)
	}
	tr := tp.Transport()
	tmpl := tpm2.ECCSRKTemplate
	tmpl.ObjectAttributes.NoDA = false // wrong passwords count
	prim, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tmpl),
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: []byte("the right one")},
		}},
	}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: prim.ObjectHandle}.Execute(tr)
	_, err = tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: prim.ObjectHandle, Name: prim.Name, Auth: tpm2.PasswordAuth([]byte("a guess"))},
		InPublic:     tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tr)
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
}
