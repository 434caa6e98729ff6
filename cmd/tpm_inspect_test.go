package cmd

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// tpmTool runs a tpm2-tools program against swtpm instance inst (through
// TPM2TOOLS_TCTI), failing the test when it fails unless wantFail.
func tpmTool(t *testing.T, inst *swtpmtest.Instance, wantFail bool, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true: cannot skip)", name)
		}
		t.Skipf("%s not installed (apt-get install tpm2-tools)", name)
	}
	c := exec.Command(name, args...)
	c.Dir = t.TempDir()
	c.Env = append(os.Environ(), "TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port="+strings.TrimPrefix(inst.Addr, "swtpm://127.0.0.1:"))
	out, err := c.CombinedOutput()
	if (err != nil) != wantFail {
		t.Fatalf("%s %v: err %v (want failure: %v)\n%s", name, args, err, wantFail, out)
	}
	return string(out)
}

// inspectRun runs `station tpm inspect -o json` with args in dir and
// parses its one JSON document, checking the process's exit code is the
// document's and that keys are snake_case and handles hex strings.
func inspectRun(t *testing.T, dir string, env []string, args ...string) (*inspectReport, map[string]any, int) {
	t.Helper()
	out, errOut, code := runStation(t, dir, env, append([]string{"tpm", "inspect", "-o", "json"}, args...)...)
	var rep inspectReport
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("tpm inspect -o json: exit %d, %v\nstdout: %s\nstderr: %s", code, err, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	if rep.ExitCode != code {
		t.Fatalf("exit_code %d in the JSON, process exit %d", rep.ExitCode, code)
	}
	checkJSONKeys(t, raw, "")
	return &rep, raw, code
}

var snakeRe = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

// checkJSONKeys requires snake_case keys everywhere and every value under a
// "handle"/"nv_index"/"index" key to be a 0x%08x string.
func checkJSONKeys(t *testing.T, v any, path string) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if !snakeRe.MatchString(k) {
				t.Errorf("key %s.%s is not snake_case", path, k)
			}
			if k == "handle" || k == "nv_index" || k == "index" || k == "certified_handle" {
				if s, ok := val.(string); !ok || !regexp.MustCompile(`^0x[0-9a-f]{8}$`).MatchString(s) {
					t.Errorf("%s.%s = %v, want a \"0x%%08x\" string", path, k, val)
				}
			}
			checkJSONKeys(t, val, path+"."+k)
		}
	case []any:
		for i, e := range x {
			checkJSONKeys(t, e, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

func handleOf(rep *inspectReport, h string) *inspectHandle {
	for i := range rep.Persistent {
		if rep.Persistent[i].Handle == h {
			return &rep.Persistent[i]
		}
	}
	return nil
}

func vendorRootsDir(t *testing.T, pems ...[]byte) string {
	t.Helper()
	dir := t.TempDir()
	for i, p := range pems {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ca%d.pem", i)), p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func needLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("swtpm tests run on Linux")
	}
}

// TestTPMInspectFresh inspects a factory-fresh swtpm with no config at all:
// both EK certificates found, matched to the persisted EKs and chained to
// the test vendor CA; an empty roots folder, or another vendor's, gives the
// matching chain status; nothing on the TPM changes.
func TestTPMInspectFresh(t *testing.T) {
	needLinux(t)
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	before := readTPMState(t, inst.Addr)
	roots := vendorRootsDir(t, inst.CA.RootPEM, inst.CA.IssuerPEM)
	dir := t.TempDir() // no station.yaml, no database
	rep, raw, code := inspectRun(t, dir, []string{"STATION_TPM_VENDOR_ROOTS=" + roots}, "--tpm", inst.Addr)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if rep.Vendor.Manufacturer != "IBM" || !strings.Contains(rep.Vendor.VendorString, "SW") || rep.Vendor.ManufacturerID != "0x49424d00" ||
		rep.Vendor.SpecFamily != "2.0" || rep.Vendor.FirmwareVersionRaw[0] == "" {
		t.Errorf("vendor %+v", rep.Vendor)
	}
	want := map[string]struct{ slot, handle string }{
		"0x01c00002": {"rsa2048", "0x81010001"},
		"0x01c00016": {"ecc-p384", "0x81010016"},
	}
	if len(rep.EKCerts) != len(want) {
		t.Fatalf("%d EK certificates, want %d: %+v", len(rep.EKCerts), len(want), rep.EKCerts)
	}
	for _, c := range rep.EKCerts {
		w := want[c.NVIndex]
		if !c.Read || c.Slot != w.slot || c.Key != w.slot || !c.KeyMatchesSlot || c.CertifiedHandle != w.handle ||
			c.TCGHeader || c.DERLength == 0 || c.Chain.Status != "chains" || len(c.Chain.Path) == 0 || len(c.Chain.AnchorSHA256) != 64 {
			t.Errorf("EK certificate %s: %+v", c.NVIndex, c)
		}
		if c.NVSize != c.DERLength+c.Padding {
			t.Errorf("%s: NV %d bytes, DER %d + padding %d", c.NVIndex, c.NVSize, c.DERLength, c.Padding)
		}
		if !strings.Contains(strings.Join(c.NVAttributes, "|"), "no_da") {
			t.Errorf("%s attributes %v", c.NVIndex, c.NVAttributes)
		}
	}
	for h, detail := range map[string]string{"0x81010001": "standard RSA-2048 EK (TCG template L-1); certified by NV 0x01c00002",
		"0x81010016": "standard ECC P-384 EK (TCG template H-3); certified by NV 0x01c00016"} {
		if v := handleOf(rep, h); v == nil || v.Role != "ek" || !v.Station || v.Detail != detail {
			t.Errorf("%s: %+v", h, v)
		}
	}
	if len(rep.Persistent) != 2 || rep.Auth != (inspectAuth{}) || rep.DA.InLockout || rep.DA.LockoutCounter != 0 ||
		rep.Database.Status != dbNone || len(rep.Transients) != 0 || len(rep.Leaked) != 0 {
		t.Errorf("report %+v", rep)
	}
	if da := raw["dictionary_attack"].(map[string]any); da["max_tries"] == nil || da["lockout_recovery_seconds"] == nil {
		t.Errorf("dictionary_attack %v", da)
	}

	// The text report says the same.
	out, _, code := runStation(t, dir, []string{"STATION_TPM_VENDOR_ROOTS=" + roots}, "tpm", "inspect", "--tpm", inst.Addr)
	for _, s := range []string{"manufacturer   IBM", "NV 0x01c00002  rsa2048 slot, low range", "chains: via ", "certifies a ecc-p384 key, the one at 0x81010016",
		"0x81010001  rsa2048   ek           standard RSA-2048 EK", "owner empty, endorsement empty, lockout empty", "not in lockout; 0 of 3 failures",
		"no station database", "none left by this inspection"} {
		if code != 0 || !strings.Contains(out, s) {
			t.Errorf("text report (exit %d) lacks %q:\n%s", code, s, out)
		}
	}
	t.Logf("station tpm inspect:\n%s", out)

	// An empty roots folder: read all the same, chains not checked.
	rep, _, code = inspectRun(t, dir, []string{"STATION_TPM_VENDOR_ROOTS=" + t.TempDir()}, "--tpm", inst.Addr)
	if code != 0 || !strings.Contains(rep.Roots.Error, "no usable certificate") {
		t.Fatalf("empty roots: exit %d, roots %+v", code, rep.Roots)
	}
	for _, c := range rep.EKCerts {
		if !c.Read || c.Chain.Status != "not-checked" || c.CertifiedHandle == "" {
			t.Errorf("empty roots, %s: %+v", c.NVIndex, c)
		}
	}
	// Another vendor's CA (swtpm_localca names every CA alike): does not
	// chain, the signature says why.
	other := swtpmtest.NewCA(t)
	rep, _, code = inspectRun(t, dir, nil, "--tpm", inst.Addr, "--roots", vendorRootsDir(t, other.RootPEM, other.IssuerPEM))
	for _, c := range rep.EKCerts {
		if code != 0 || c.Chain.Status != "does-not-chain" || !strings.Contains(c.Chain.Reason, "does not verify") {
			t.Errorf("other vendor, %s (exit %d): %+v", c.NVIndex, code, c.Chain)
		}
	}
	// The issuer alone anchors the chain (every folder certificate is an anchor).
	rep, _, _ = inspectRun(t, dir, nil, "--tpm", inst.Addr, "--roots", vendorRootsDir(t, inst.CA.IssuerPEM))
	if rep.EKCerts[0].Chain.Status != "chains" {
		t.Errorf("issuer only: %+v", rep.EKCerts[0].Chain)
	}
	// An explicit --roots that holds nothing is a usage error.
	if _, errOut, code := runStation(t, dir, nil, "tpm", "inspect", "--tpm", inst.Addr, "--roots", t.TempDir()); code != ExitUsage || !strings.Contains(errOut, "--roots") {
		t.Errorf("empty --roots: exit %d, %s", code, errOut)
	}

	if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
		t.Errorf("the TPM changed: %s", d)
	}
}

// TestTPMInspectProvisioned inspects a unit station provisioned: with the
// line's config the database names it and its handles are station's; with
// no config at all they are still recognised by their templates. A fresh
// TPM and one whose lockout auth someone else set are told apart.
func TestTPMInspectProvisioned(t *testing.T) {
	needLinux(t)
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newLine(t, vendor)
	inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	unitDir := t.TempDir()
	if out, errOut, code := l.run("provision", "--serial", "INSP-1", "--tpm", inst.Addr, "--flash", "dir:"+unitDir); code != 0 {
		t.Fatalf("provision: exit %d\n%s%s", code, out, errOut)
	}
	before := readTPMState(t, inst.Addr)

	out, errOut, code := l.run("tpm", "inspect", "--tpm", inst.Addr, "-o", "json")
	var rep inspectReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("exit %d, %v\n%s%s", code, err, out, errOut)
	}
	if rep.Database.Status != "provisioned" || rep.Database.Serial != "INSP-1" {
		t.Errorf("database %+v", rep.Database)
	}
	for h, w := range map[string]struct{ role, detail string }{
		"0x81010001": {"ek", "the EK recorded for unit INSP-1"},
		"0x81000001": {"srk", "standard RSA-2048 SRK template; the SRK recorded for unit INSP-1"},
		"0x81000010": {"device-key", "station's device key of unit INSP-1"},
	} {
		if v := handleOf(&rep, h); v == nil || v.Role != w.role || !v.Station || !strings.Contains(v.Detail, w.detail) {
			t.Errorf("%s: %+v, want %+v", h, v, w)
		}
	}
	if rep.Auth != (inspectAuth{LockoutAuthSet: true}) || rep.DA.MaxTries != 32 || rep.DA.InLockout || len(rep.Leaked) != 0 {
		t.Errorf("auth %+v, DA %+v", rep.Auth, rep.DA)
	}
	if rep.EKCerts[0].Chain.Status != "chains" {
		t.Errorf("EK certificate chain with the line's roots: %+v", rep.EKCerts[0].Chain)
	}

	// The database held by another process: reported, the TPM still read.
	held, err := store.Open(filepath.Join(l.dir, "station.db"), store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	out, _, code = l.run("tpm", "inspect", "--tpm", inst.Addr, "-o", "json")
	held.Close()
	var busy inspectReport
	if err := json.Unmarshal([]byte(out), &busy); err != nil || code != 0 || busy.Database.Status != dbUnavailable ||
		!strings.Contains(busy.Database.Detail, "in use by another process") || handleOf(&busy, "0x81000010") == nil {
		t.Errorf("database busy: exit %d, %v, %+v", code, err, busy.Database)
	}

	// No config at all: the same TPM, recognised by templates alone.
	bare, _, code := inspectRun(t, t.TempDir(), nil, "--tpm", inst.Addr)
	if code != 0 || bare.Database.Status != dbNone {
		t.Fatalf("no config: exit %d, database %+v", code, bare.Database)
	}
	if v := handleOf(bare, "0x81000010"); v == nil || v.Role != "device-key" || !strings.Contains(v.Detail, "no station database record") {
		t.Errorf("device key without a database: %+v", v)
	}
	if v := handleOf(bare, "0x81000001"); v == nil || v.Role != "srk" || v.Detail != "standard RSA-2048 SRK template" {
		t.Errorf("SRK without a database: %+v", v)
	}
	if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
		t.Errorf("the TPM changed: %s", d)
	}

	// A fresh TPM, then the same once someone else set its lockout auth.
	fresh := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	out, _, _ = l.run("tpm", "inspect", "--tpm", fresh.Addr, "-o", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Database.Status != "fresh" {
		t.Errorf("fresh TPM: %v %+v", err, rep.Database)
	}
	tpmTool(t, fresh, false, "tpm2_changeauth", "-c", "lockout", "someone-elses")
	out, _, _ = l.run("tpm", "inspect", "--tpm", fresh.Addr, "-o", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Database.Status != "owned-elsewhere" || !strings.Contains(rep.Database.Detail, "lockout auth is set") {
		t.Errorf("TPM owned elsewhere: %v %+v", err, rep.Database)
	}
}

// TestTPMInspectForeignKeys: keys another tool persisted (at a free handle
// and at the SRK's) are shown as unknown and left exactly where they were;
// the transient objects that tool left loaded (swtpm has no resource
// manager) are reported and not flushed.
func TestTPMInspectForeignKeys(t *testing.T) {
	needLinux(t)
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	for i, h := range []string{"0x81000050", "0x81000001"} {
		if i > 0 {
			tpmTool(t, inst, false, "tpm2_flushcontext", "-t")
		}
		ctx := filepath.Join(t.TempDir(), "primary.ctx")
		tpmTool(t, inst, false, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", ctx)
		tpmTool(t, inst, false, "tpm2_evictcontrol", "-C", "o", "-c", ctx, h)
	}
	before := readTPMState(t, inst.Addr)
	rep, _, code := inspectRun(t, t.TempDir(), nil, "--tpm", inst.Addr)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if len(rep.Transients) == 0 || len(rep.Leaked) != 0 {
		t.Errorf("tpm2-tools' leftover transients %v, leaked %v", rep.Transients, rep.Leaked)
	}
	for _, h := range []string{"0x81000050", "0x81000001"} {
		v := handleOf(rep, h)
		if v == nil || v.Role != "unknown" || v.Station || v.Alg != "ecc-p256" || !strings.HasPrefix(v.Detail, "unknown: not station's") ||
			!strings.Contains(v.Detail, "untouched") {
			t.Errorf("%s: %+v", h, v)
		}
	}
	if v := handleOf(rep, "0x81010001"); v == nil || v.Role != "ek" {
		t.Errorf("the EK beside them: %+v", v)
	}
	if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
		t.Errorf("the TPM changed: %s", d)
	}
}

// TestTPMInspectLockout drives a swtpm into dictionary-attack lockout with
// wrong authorizations (tpm2-tools) and requires inspect to read it all the
// same and report the lockout, its counter and parameters, changing nothing.
func TestTPMInspectLockout(t *testing.T) {
	needLinux(t)
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	tpmTool(t, inst, false, "tpm2_dictionarylockout", "-s", "-n", "2", "-t", "600", "-l", "900")
	ctx := filepath.Join(t.TempDir(), "key.ctx")
	tpmTool(t, inst, false, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-p", "right", "-c", ctx)
	tpmTool(t, inst, false, "tpm2_evictcontrol", "-C", "o", "-c", ctx, "0x81000060")
	tpmTool(t, inst, false, "tpm2_flushcontext", "-t")
	for range 2 {
		out := tpmTool(t, inst, true, "tpm2_create", "-C", "0x81000060", "-P", "wrong", "-G", "ecc",
			"-u", filepath.Join(t.TempDir(), "k.pub"), "-r", filepath.Join(t.TempDir(), "k.priv"))
		if !strings.Contains(out, "0x98e") && !strings.Contains(strings.ToLower(out), "authorization") {
			t.Logf("tpm2_create with a wrong auth: %s", out)
		}
	}
	if !strings.Contains(tpmTool(t, inst, false, "tpm2_getcap", "properties-variable"), "inLockout:                 1") {
		t.Fatal("the TPM is not in lockout after two wrong authorizations with max tries 2")
	}
	before := readTPMState(t, inst.Addr)
	rep, _, code := inspectRun(t, t.TempDir(), nil, "--tpm", inst.Addr)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if rep.DA != (inspectDA{InLockout: true, LockoutCounter: 2, MaxTries: 2, RecoverySeconds: 600, LockoutRecoverySeconds: 900}) {
		t.Errorf("DA %+v", rep.DA)
	}
	if len(rep.EKCerts) != 2 || !rep.EKCerts[0].Read {
		t.Errorf("EK certificates not read in lockout: %+v", rep.EKCerts)
	}
	out, _, _ := runStation(t, t.TempDir(), nil, "tpm", "inspect", "--tpm", inst.Addr)
	if !strings.Contains(out, "IN LOCKOUT; 2 of 2 failures; one failure forgiven every 600 s; lockout auth retry after 900 s") {
		t.Errorf("text report:\n%s", out)
	}
	if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
		t.Errorf("the TPM changed: %s", d)
	}
}

// TestTPMInspectExitCodes: the simulator is read (0); a bad address or
// flag is 2; an unreachable TPM, or one busy with another client, is 5,
// with one JSON document on stdout under -o json.
func TestTPMInspectExitCodes(t *testing.T) {
	needLinux(t)
	dir := t.TempDir()
	rep, _, code := inspectRun(t, dir, nil, "--tpm", "sim")
	if code != 0 || rep.Vendor.Manufacturer == "" || len(rep.EKCerts) != 0 || len(rep.Persistent) != 0 {
		t.Errorf("sim: exit %d, %+v", code, rep)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"tpm", "inspect", "--tpm", "bogus"}, ExitUsage, "bad TPM address"},
		{[]string{"tpm", "inspect", "--no-such-flag"}, ExitUsage, "unknown flag"},
		{[]string{"tpm", "inspect", "extra"}, ExitUsage, "takes no arguments"},
		{[]string{"tpm"}, ExitUsage, "subcommand"},
		{[]string{"tpm", "inspect", "--tpm", "swtpm://127.0.0.1:1"}, ExitEnvironment, "TPM unreachable"},
	} {
		if _, errOut, code := runStation(t, dir, nil, tc.args...); code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("station %v: exit %d, want %d; stderr %s", tc.args, code, tc.code, errOut)
		}
	}
	out, _, code := runStation(t, dir, nil, "tpm", "inspect", "-o", "json", "--tpm", "swtpm://127.0.0.1:1")
	var fail inspectFailure
	if err := json.Unmarshal([]byte(out), &fail); err != nil || code != ExitEnvironment || fail.ExitCode != ExitEnvironment || fail.Hint == "" {
		t.Errorf("-o json unreachable: exit %d, %q (%v)", code, out, err)
	}

	// swtpm serves one client at a time: hold the connection.
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	holder := openTPM(t, inst.Addr)
	if _, err := holder.Persistent(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, errOut, code := runStation(t, dir, nil, "tpm", "inspect", "--tpm", inst.Addr)
	holder.Close()
	if code != ExitEnvironment || !strings.Contains(errOut, "busy") {
		t.Errorf("busy TPM: exit %d after %v, stderr %s", code, time.Since(start), errOut)
	}
}

// nvWrite defines index with platform authorization, as a TPM vendor's
// manufacturing does, and writes data into it (tpm2-tools).
func nvWrite(t *testing.T, inst *swtpmtest.Instance, index string, data []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "nv.bin")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tpmTool(t, inst, false, "tpm2_nvdefine", "-C", "p", "-s", fmt.Sprint(len(data)),
		"-a", "ppwrite|ppread|ownerread|authread|no_da|platformcreate", index)
	tpmTool(t, inst, false, "tpm2_nvwrite", "-C", "p", "-i", f, index)
}

// TestTPMInspectNVShapes rewrites a swtpm's RSA EK certificate the way
// real chips store theirs (TCG PC-Client header, 0xFF padding) and puts
// the vendor's intermediate in the EK chain range: inspect reports the
// shape and chains through the intermediate from NV to a roots folder
// holding only the root.
func TestTPMInspectNVShapes(t *testing.T) {
	needLinux(t)
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	rootOnly := vendorRootsDir(t, inst.CA.RootPEM)
	rep, _, _ := inspectRun(t, t.TempDir(), nil, "--tpm", inst.Addr, "--roots", rootOnly)
	c := rep.EKCerts[0]
	if c.Chain.Status != "does-not-chain" || !strings.Contains(c.Chain.Reason, "issuer swtpm-localca not in the roots folder") {
		t.Fatalf("root only, no intermediate: %+v", c.Chain)
	}

	tp := openTPM(t, inst.Addr)
	der, err := tp.ReadEKCert(tpmops.RSA2048)
	tp.Close()
	if err != nil {
		t.Fatal(err)
	}
	n := len(der) + 2
	shaped := append([]byte{0x10, 0x01, 0x00, byte(n >> 8), byte(n), 0x10, 0x02}, der...)
	shaped = append(shaped, bytes.Repeat([]byte{0xff}, 100)...)
	tpmTool(t, inst, false, "tpm2_nvundefine", "-C", "p", "0x01c00002")
	nvWrite(t, inst, "0x01c00002", shaped)
	blk, _ := pem.Decode(inst.CA.IssuerPEM)
	nvWrite(t, inst, "0x01c00100", append(blk.Bytes, make([]byte, 64)...))

	before := readTPMState(t, inst.Addr)
	rep, _, code := inspectRun(t, t.TempDir(), nil, "--tpm", inst.Addr, "--roots", rootOnly)
	c = rep.EKCerts[0]
	if code != 0 || c.NVIndex != "0x01c00002" || !c.TCGHeader || c.Padding != 100 || c.DERLength != len(der) || c.CertifiedHandle != "0x81010001" {
		t.Errorf("shaped certificate (exit %d): %+v", code, c)
	}
	if c.Chain.Status != "chains" || len(c.Chain.Path) != 2 || c.Chain.Path[0] != "CN=swtpm-localca" {
		t.Errorf("chain through the NV intermediate: %+v", c.Chain)
	}
	if len(rep.Intermediates) != 1 || rep.Intermediates[0].Subject != "CN=swtpm-localca" {
		t.Errorf("nv_intermediates %+v", rep.Intermediates)
	}
	var what string
	for _, nv := range rep.NV {
		if nv.Index == "0x01c00100" {
			what = nv.What
		}
	}
	if what != "EK certificate chain (vendor intermediates)" {
		t.Errorf("0x01c00100 described as %q", what)
	}
	if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
		t.Errorf("the TPM changed: %s", d)
	}
}
