package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
)

// Passwords of the benchmark line's keys (examples, as in the README).
const (
	rootPW = "bench-root-pw"
	linePW = "bench-line-pw"
)

// line is a station set up as the README's walk-through does, through the
// station program, plus what the reference script needs: the line
// intermediate's key in plaintext, its chain and the firmware image.
type line struct {
	dir, exe   string
	vendor     *swtpmtest.CA
	env        []string
	plainKey   string // the line intermediate's key, unencrypted, for reference.sh
	issuerCert string
	chain      string
	firmware   string
}

func repoRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("no caller information")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// needTools skips (or fails under CI=true) when a program is missing.
func needTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("%s not installed (CI=true: cannot skip); run scripts/deps.sh", tool)
			}
			tb.Skipf("%s not installed; run scripts/deps.sh", tool)
		}
	}
}

var refTools = []string{"bash", "swtpm", "swtpm_setup", "tpm2_createek", "tpm2_createprimary", "tpm2_create",
	"tpm2_load", "tpm2_evictcontrol", "tpm2_changeauth", "tpm2_nvread", "tpm2_readpublic", "tpm2_flushcontext", "openssl", "sha256sum"}

// needProvider skips (or fails under CI=true) without OpenSSL's tpm2 provider.
func needProvider(tb testing.TB) {
	tb.Helper()
	out, err := exec.Command("openssl", "version", "-m").Output() // MODULESDIR: "/usr/lib/.../ossl-modules"
	dir := strings.Trim(strings.TrimSpace(strings.TrimPrefix(string(out), "MODULESDIR:")), `"`)
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "tpm2.so"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("OpenSSL's tpm2 provider (tpm2-openssl) is not installed (CI=true: cannot skip); run scripts/deps.sh")
		}
		tb.Skip("OpenSSL's tpm2 provider (tpm2-openssl) is not installed; run scripts/deps.sh")
	}
}

// buildStation builds the station program into a temporary folder.
func buildStation(tb testing.TB) string {
	tb.Helper()
	exe := filepath.Join(tb.TempDir(), "station")
	c := exec.Command("go", "build", "-o", exe, "./cmd/station")
	c.Dir = repoRoot(tb)
	if b, err := c.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/station: %v\n%s", err, b)
	}
	return exe
}

// newLine builds station and sets up a line: PKI, escrow key, firmware,
// config and database. The fixture's TPM (tpm.address, which station init's
// doctor checks) is fixture, and its vendor the line's.
func newLine(tb testing.TB, fixture *swtpmtest.Instance) *line {
	tb.Helper()
	vendor := fixture.CA
	l := &line{dir: tb.TempDir(), exe: buildStation(tb), vendor: vendor}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STATION_") {
			l.env = append(l.env, kv)
		}
	}
	roots := filepath.Join(l.dir, "vendor-roots")
	os.MkdirAll(roots, 0o755)
	os.WriteFile(filepath.Join(roots, "root.pem"), vendor.RootPEM, 0o644)
	os.WriteFile(filepath.Join(roots, "issuer.pem"), vendor.IssuerPEM, 0o644)
	l.run(tb, []string{"STATION_CA_KEY_PASSWORD=" + rootPW}, "ca", "init-root", "--subject", "Bench Root CA", "--out", "pki/root")
	l.run(tb, []string{"STATION_CA_ISSUER_PASSWORD=" + rootPW, "STATION_CA_KEY_PASSWORD=" + linePW},
		"ca", "issue-intermediate", "--issuer-cert", "pki/root/ca.crt", "--issuer-key", "pki/root/ca.key",
		"--subject", "Bench Line CA", "--path-len", "0", "--out", "pki/line")
	l.issuerCert = filepath.Join(l.dir, "pki/line/ca.crt")
	l.chain = filepath.Join(l.dir, "pki/line/chain.pem")
	l.plainKey = filepath.Join(l.dir, "line-plain.key")
	l.firmware = filepath.Join(l.dir, "app.bin")
	sh(tb, l.dir, "openssl", "pkey", "-in", "pki/line/ca.key", "-passin", "pass:"+linePW, "-out", l.plainKey)
	sh(tb, l.dir, "openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "escrow.key.pem")
	sh(tb, l.dir, "openssl", "ec", "-in", "escrow.key.pem", "-pubout", "-out", "escrow.pub.pem")
	fw := bytes.Repeat([]byte("firmware"), 1<<17) // 1 MiB, as the README's
	os.WriteFile(l.firmware, fw, 0o644)
	sum := sha256.Sum256(fw)
	conf := fmt.Sprintf(`station: {id: bench-st01, db: station.db, signing_key: audit-key.pem}
tpm: {address: %q, vendor_roots: vendor-roots/}
ownership: {escrow_public_key: escrow.pub.pem}
pki: {issuer_cert: pki/line/ca.crt, issuer_key: pki/line/ca.key, chain: pki/line/chain.pem, root: pki/root/ca.crt}
dps: {id_scope: 0ne00000000}
firmware: {image: app.bin, sha256: %s}
`, fixture.Addr, hex.EncodeToString(sum[:]))
	os.WriteFile(filepath.Join(l.dir, "station.yaml"), []byte(conf), 0o644)
	l.env = append(l.env, "STATION_PKI_KEY_PASSWORD="+linePW)
	l.run(tb, nil, "init")
	return l
}

// run runs station in the line's folder and fails tb unless it succeeds.
func (l *line) run(tb testing.TB, env []string, args ...string) []byte {
	tb.Helper()
	out, err := l.cmd(env, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		tb.Fatalf("station %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

func (l *line) cmd(env []string, args ...string) *exec.Cmd {
	c := exec.Command(l.exe, args...)
	c.Dir, c.Env = l.dir, append(append([]string{}, l.env...), env...)
	return c
}

func sh(tb testing.TB, dir, name string, args ...string) {
	tb.Helper()
	c := exec.Command(name, args...)
	c.Dir = dir
	if b, err := c.CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
}

// tcti is the tpm2-tools TCTI of a swtpm instance.
func tcti(inst *swtpmtest.Instance) string {
	return "swtpm:host=127.0.0.1,port=" + strings.TrimPrefix(inst.Addr, "swtpm://127.0.0.1:")
}

// reference runs scripts/bench/reference.sh on inst for serial and returns
// its step times (ms).
func (l *line) reference(tb testing.TB, inst *swtpmtest.Instance, serial string) map[string]float64 {
	tb.Helper()
	unit := filepath.Join(l.dir, "ref-units", serial)
	c := exec.Command(filepath.Join(repoRoot(tb), "scripts", "bench", "reference.sh"), serial, tcti(inst),
		l.issuerCert, l.plainKey, l.chain, l.firmware, unit, filepath.Join(l.dir, "ref-log"))
	c.Dir = l.dir
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		tb.Fatalf("reference.sh %s: %v\n%s%s", serial, err, out, stderr.Bytes())
	}
	steps := map[string]float64{}
	for _, f := range strings.Fields(string(out)) {
		var v float64
		name, val, ok := strings.Cut(f, "=")
		if _, err := fmt.Sscan(val, &v); !ok || err != nil {
			tb.Fatalf("reference.sh %s: bad step time %q in %q", serial, f, out)
		}
		steps[name] = v
	}
	return steps
}

// provisionResult is what station provision -o json reports of a unit.
type provisionResult struct {
	Serial  string             `json:"serial"`
	StepsMs map[string]float64 `json:"steps_ms"`
	TPMMs   float64            `json:"tpm_ms"`
	TotalMs float64            `json:"total_ms"`
}

func decodeResults(tb testing.TB, out []byte) []provisionResult {
	tb.Helper()
	var rs []provisionResult
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var r provisionResult
		if err := dec.Decode(&r); err != nil {
			tb.Fatalf("station -o json: %v\n%s", err, out)
		}
		rs = append(rs, r)
	}
	return rs
}
