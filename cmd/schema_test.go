package cmd

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/station"
	"github.com/spf13/cobra"
)

// schemaBase is the $id prefix of every schema in docs/schemas.
const schemaBase = "https://github.com/factory-id/station/docs/schemas/"

// outputSchemas names, for every command that prints a JSON document with
// -o json, the schemas of docs/schemas its documents follow: a success and,
// where the command prints one, a failure document.
// TestEveryCommandHasASchema requires every runnable command to be here or
// in noJSONDocument; TestOutputSchemas runs each for real.
var outputSchemas = map[string][]string{
	"station init":                  {"init"},
	"station provision":             {"provision"},
	"station verify":                {"verify"},
	"station units list":            {"units-list"},
	"station units show":            {"units-show"},
	"station revoke":                {"revoke"},
	"station enroll export":         {"enroll-export"},
	"station enroll verify-export":  {"enroll-verify-export"},
	"station enroll merge":          {"enroll-merge"},
	"station audit verify":          {"audit-verify", "audit-verify-proof", "audit-verify-failure"},
	"station audit export":          {"audit-export"},
	"station audit pubkey":          {"audit-pubkey"},
	"station audit proof":           {"audit-proof"},
	"station ca init-root":          {"ca"},
	"station ca issue-intermediate": {"ca"},
	"station ca issue-leaf":         {"ca-issue-leaf"},
	"station ek check":              {"ek-check"},
	"station tpm inspect":           {"tpm-inspect", "tpm-inspect-failure"},
	"station backup":                {"backup"},
	"station doctor":                {"doctor"},
	"station report":                {"report"},
	"station demo":                  {"demo"},
	"station agent":                 {"agent"},
	"station line":                  {"line"},
	"station docs man":              {"docs-man"},
}

// everyCommandSchemas are the schemas of documents any command may print:
// the error document of a command that failed before printing its own.
var everyCommandSchemas = []string{"error"}

// noJSONDocument are the runnable commands, groups aside, that print no
// JSON document, and why.
var noJSONDocument = map[string]string{
	"station help":       "cobra's help text",
	"station completion": "a shell script",
}

// TestEveryCommandHasASchema walks the command tree: every runnable command
// (all accept the global -o json) must name its schemas in outputSchemas,
// or say in noJSONDocument why it prints none; every schema named must be
// a file in docs/schemas, every file there must be named, and
// docs/OUTPUT.md must show each command and link each schema.
func TestEveryCommandHasASchema(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "OUTPUT.md"))
	if err != nil {
		t.Fatal(err)
	}
	root := NewRootCommand("test")
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	seen := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := c.CommandPath()
		if p := c.Parent(); p != nil && p.Name() == "completion" {
			path = p.CommandPath() // one entry covers the shells
		}
		// A group (station, station units...) prints its help without a
		// subcommand and refuses an unknown one (exit 2): no document.
		if c.Runnable() && !c.Hidden && !c.HasSubCommands() {
			seen[path] = true
			_, ok := outputSchemas[path]
			if _, none := noJSONDocument[path]; !ok && !none {
				t.Errorf("%s: runnable, accepts -o json, and has no schema in outputSchemas (nor a reason in noJSONDocument)", path)
			}
			if ok && c.Flag("output") == nil {
				t.Errorf("%s: listed in outputSchemas but has no -o flag", path)
			}
			if ok && !strings.Contains(string(doc), "`"+path) {
				t.Errorf("docs/OUTPUT.md does not document %q", path)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	named := map[string]bool{}
	for _, n := range everyCommandSchemas {
		named[n+".json"] = true
	}
	for path, names := range outputSchemas {
		if !seen[path] {
			t.Errorf("outputSchemas lists %q, which is no runnable command", path)
		}
		for _, n := range names {
			named[n+".json"] = true
		}
	}
	for n := range named {
		if _, err := os.Stat(filepath.Join("..", "docs", "schemas", n)); err != nil {
			t.Errorf("schema %s: %v", n, err)
		}
		if !strings.Contains(string(doc), "schemas/"+n) {
			t.Errorf("docs/OUTPUT.md does not link schemas/%s", n)
		}
	}
	files, _ := filepath.Glob(filepath.Join("..", "docs", "schemas", "*.json"))
	for _, f := range files {
		if b := filepath.Base(f); !named[b] {
			t.Errorf("docs/schemas/%s is the schema of no command in outputSchemas", b)
		}
	}
	compileSchemas(t) // every file is a valid draft 2020-12 schema
}

// compileSchemas compiles every schema of docs/schemas (draft 2020-12,
// each self-contained) and returns them by name.
func compileSchemas(t testing.TB) map[string]*jsonschema.Schema {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "docs", "schemas", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no schemas in docs/schemas: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if id, _ := v.(map[string]any)["$id"].(string); id != schemaBase+filepath.Base(f) {
			t.Errorf("%s: $id %q, want %q", f, id, schemaBase+filepath.Base(f))
		}
		if s, _ := v.(map[string]any)["$schema"].(string); s != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema %q, want draft 2020-12", f, s)
		}
		if err := c.AddResource(schemaBase+filepath.Base(f), v); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		s, err := c.Compile(schemaBase + filepath.Base(f))
		if err != nil {
			t.Fatalf("compiling %s: %v", f, err)
		}
		out[name] = s
	}
	return out
}

// schemaRun is one command line of TestOutputSchemas and what it must print.
type schemaRun struct {
	schema string   // docs/schemas/<schema>.json
	args   []string // after -o json
	code   int      // the exit status it must end with
	lines  bool     // JSON lines (one object per unit) rather than one document
	stdin  string
	env    []string
}

// TestOutputSchemas runs every command that has a JSON document for real,
// on one station made by `station demo -o json` (simulated TPMs, no EK
// certificates required), and validates each document it prints against
// its schema in docs/schemas; successes and the failure documents both.
// Each document must also be snake_case throughout, and a single document
// that carries exit_code must carry the process's exit status.
func TestOutputSchemas(t *testing.T) {
	needLinux(t)
	schemas := compileSchemas(t)
	tpm := swtpmtest.Start(t, swtpmtest.Options{}) // S-1 lives on: verify passes there
	l := &line{t: t, bin: stationExe(t), dir: t.TempDir()}
	l.config = filepath.Join(l.dir, "station.yaml")
	roots := filepath.Join(t.TempDir(), "vendor")
	os.MkdirAll(roots, 0o755)
	os.WriteFile(filepath.Join(roots, "root.pem"), tpm.CA.RootPEM, 0o644)
	os.WriteFile(filepath.Join(roots, "issuer.pem"), tpm.CA.IssuerPEM, 0o644)
	l.env = append(os.Environ(), "STATION_CONFIG="+l.config, "STATION_TPM_REQUIRE_EK_CERT=false", "STATION_TPM_VENDOR_ROOTS="+roots)
	d := func(p ...string) string { return filepath.Join(append([]string{l.dir}, p...)...) }
	covered := map[string]bool{}
	check := func(r schemaRun) {
		t.Helper()
		c := l.cmd(append([]string{"-o", "json"}, r.args...)...)
		c.Env = append(c.Env, r.env...)
		c.Stdin = strings.NewReader(r.stdin)
		out, errOut, code := runExit(t, c)
		if code != r.code {
			t.Errorf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", r.args, code, r.code, out, errOut)
			return
		}
		validateOutput(t, schemas, r, out, code)
		covered[r.schema] = true
	}

	// The station, and demo's own document.
	check(schemaRun{schema: "demo", args: []string{"demo", "--units", "1", "--out", l.dir}, lines: true})
	for _, u := range []string{"S-1", "S-2", "S-3"} {
		os.MkdirAll(d("units", u), 0o700)
	}
	batch := d("batch.csv")
	os.WriteFile(batch, []byte("S-2,sim:102,dir:"+d("units", "S-2")+"\nS-3,sim:103,dir:"+d("units", "S-3")+"\n"), 0o600)
	check(schemaRun{schema: "init", args: []string{"init"}})
	check(schemaRun{schema: "doctor", args: []string{"doctor"}})
	check(schemaRun{schema: "provision", args: []string{"provision", "--serial", "S-1", "--tpm", tpm.Addr, "--flash", "dir:" + d("units", "S-1")}})
	check(schemaRun{schema: "provision", args: []string{"provision", "--batch", batch}, lines: true})
	check(schemaRun{schema: "provision", args: []string{"provision", "--serial", "F-1", "--tpm", "sim:104", "--flash", "dir:" + d("absent")}, code: ExitFailed})
	check(schemaRun{schema: "verify", args: []string{"verify", "--serial", "S-1", "--tpm", tpm.Addr, "--flash", "dir:" + d("units", "S-1")}})
	// Simulated TPMs live as long as their process: verify finds them fresh.
	check(schemaRun{schema: "verify", args: []string{"verify", "--batch", batch}, lines: true, code: ExitFailed})
	check(schemaRun{schema: "verify", args: []string{"verify", "--serial", "NOPE-1", "--tpm", "sim:105"}, code: ExitFailed})
	check(schemaRun{schema: "units-list", args: []string{"units", "list"}})
	check(schemaRun{schema: "docs-man", args: []string{"docs", "man", "--out", d("man")}})
	check(schemaRun{schema: "units-list", args: []string{"units", "list", "--status", "revoked"}})
	check(schemaRun{schema: "units-show", args: []string{"units", "show", "S-1"}})
	check(schemaRun{schema: "units-show", args: []string{"units", "show", "F-1"}})
	check(schemaRun{schema: "line", args: []string{"line"}, stdin: "L-1\nL-2,nosuchfixture\n", lines: true, code: ExitUsage})
	check(schemaRun{schema: "revoke", args: []string{"revoke", "--serial", "S-3", "--reason", "schema test"}})
	check(schemaRun{schema: "revoke", args: []string{"revoke", "--serial", "S-3", "--reason", "again"}})
	check(schemaRun{schema: "tpm-inspect", args: []string{"tpm", "inspect", "--tpm", tpm.Addr}})
	check(schemaRun{schema: "tpm-inspect-failure", args: []string{"tpm", "inspect", "--tpm", "swtpm://127.0.0.1:1"}, code: ExitEnvironment})
	check(schemaRun{schema: "ek-check", args: []string{"ek", "check", filepath.Join(roots, "issuer.pem")}})
	check(schemaRun{schema: "ek-check", args: []string{"ek", "check", batch}, code: ExitUsage})
	check(schemaRun{schema: "backup", args: []string{"backup", "--out", d("backup.db")}})
	check(schemaRun{schema: "report", args: []string{"report"}})

	// Enrollment exports.
	for _, f := range []string{"dps-bulk", "dps-individual", "dps-group", "csv"} {
		out := d("export-" + f)
		if f == "csv" {
			out += ".csv"
		}
		check(schemaRun{schema: "enroll-export", args: []string{"enroll", "export", "--format", f, "--out", out}})
	}
	check(schemaRun{schema: "enroll-export", args: []string{"enroll", "export", "--format", "dps-bulk", "--out", d("export-again")}})
	check(schemaRun{schema: "enroll-verify-export", args: []string{"enroll", "verify-export", d("export-dps-bulk")}})
	check(schemaRun{schema: "enroll-merge", args: []string{"enroll", "merge", d("export-dps-bulk"), d("export-again"), "--out", d("merged")}})

	// The audit trail.
	pub := d("station.pub.pem")
	pemOut, _, code := l.run("audit", "pubkey")
	if code != 0 || os.WriteFile(pub, []byte(pemOut), 0o644) != nil {
		t.Fatalf("audit pubkey: exit %d", code)
	}
	check(schemaRun{schema: "audit-pubkey", args: []string{"audit", "pubkey"}})
	check(schemaRun{schema: "audit-verify", args: []string{"audit", "verify"}})
	check(schemaRun{schema: "audit-export", args: []string{"audit", "export", "--out", d("audit-export")}})
	check(schemaRun{schema: "audit-verify", args: []string{"audit", "verify", "--export", d("audit-export"), "--key", pub}})
	check(schemaRun{schema: "audit-verify", args: []string{"audit", "verify", "--anchor", d("audit-export", "checkpoint")}})
	check(schemaRun{schema: "audit-proof", args: []string{"audit", "proof", "--serial", "S-1", "--out", d("proof.json")}})
	check(schemaRun{schema: "audit-verify-proof", args: []string{"audit", "verify", "--proof", d("proof.json"), "--key", pub}})
	tamper(t, d("audit-export", "records.jsonl"), `"operator":"demo"`, `"operator":"mallory"`)
	check(schemaRun{schema: "audit-verify-failure", args: []string{"audit", "verify", "--export", d("audit-export"), "--key", pub}, code: ExitIntegrity})

	// The CA ceremony, and a leaf from a CSR.
	caEnv := []string{"STATION_CA_KEY_PASSWORD=schema-test-password-1", "STATION_CA_ISSUER_PASSWORD=schema-test-password-1"}
	check(schemaRun{schema: "ca", args: []string{"ca", "init-root", "--subject", "Schema Root", "--out", d("ca-root")}, env: caEnv})
	check(schemaRun{schema: "ca", env: caEnv, args: []string{"ca", "issue-intermediate", "--issuer-cert", d("ca-root", "ca.crt"),
		"--issuer-key", d("ca-root", "ca.key"), "--subject", "Schema Line", "--path-len", "0", "--out", d("ca-line")}})
	csr := writeCSR(t, d("device.csr"))
	check(schemaRun{schema: "ca-issue-leaf", env: caEnv, args: []string{"ca", "issue-leaf", "--issuer-cert", d("ca-line", "ca.crt"),
		"--issuer-key", d("ca-line", "ca.key"), "--chain", d("ca-line", "chain.pem"), "--root", d("ca-root", "ca.crt"), "--csr", csr,
		"--registration-id", "schema-device-1", "--serial", "SCH-1", "--out", d("leaf.pem")}})
	check(schemaRun{schema: "revoke", args: []string{"revoke", "--ca-cert", d("pki", "line.crt"), "--reason", "schema test"}})

	// One key ID for the station key: the audit documents' and the signed
	// enrollment manifest's.
	var pk, vr, av struct {
		KeyID    string `json:"key_id"`
		Manifest struct {
			KeyID string `json:"key_id"`
		} `json:"manifest"`
	}
	for _, x := range []struct {
		v    any
		args []string
	}{{&pk, []string{"audit", "pubkey"}}, {&vr, []string{"enroll", "verify-export", d("export-dps-bulk")}}, {&av, []string{"audit", "verify"}}} {
		out, _, _ := l.run(append([]string{"-o", "json"}, x.args...)...)
		json.Unmarshal([]byte(out), x.v)
	}
	if pk.KeyID == "" || pk.KeyID != vr.Manifest.KeyID || pk.KeyID != av.KeyID {
		t.Errorf("the station key's ID: audit pubkey %q, enrollment manifest %q, audit verify %q; want one", pk.KeyID, vr.Manifest.KeyID, av.KeyID)
	}

	// Failures before any document: the error document, whatever the
	// command, with the process's exit status.
	check(schemaRun{schema: "error", args: []string{"units", "show", "NO-SUCH-UNIT"}, code: ExitUsage})
	check(schemaRun{schema: "error", args: []string{"provision", "--serial", "E-1", "--no-such-flag"}, code: ExitUsage})
	check(schemaRun{schema: "error", args: []string{"no-such-command"}, code: ExitUsage})
	check(schemaRun{schema: "error", args: []string{"audit", "verify", "--db", d("no-such.db")}, code: ExitUsage})

	// The agent's one line, then SIGTERM.
	private := d("agent")
	os.Mkdir(private, 0o700)
	covered["agent"] = agentDocument(t, l, schemas, filepath.Join(private, "agent.sock"))

	for _, n := range everyCommandSchemas {
		if !covered[n] {
			t.Errorf("no run printed a %s document", n)
		}
	}
	for path, names := range outputSchemas {
		for _, n := range names {
			if !covered[n] {
				t.Errorf("%s: no run printed a %s document", path, n)
			}
		}
	}
}

// validateOutput checks what one command line printed on stdout against
// its schema.
func validateOutput(t *testing.T, schemas map[string]*jsonschema.Schema, r schemaRun, out string, code int) {
	t.Helper()
	s := schemas[r.schema]
	if s == nil {
		t.Fatalf("no schema docs/schemas/%s.json", r.schema)
	}
	var docs []string
	if r.lines {
		docs = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	} else {
		dec := json.NewDecoder(strings.NewReader(out))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Errorf("%v: stdout is no JSON document: %v\n%s", r.args, err, out)
			return
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			t.Errorf("%v: more than one JSON document on stdout:\n%s", r.args, out)
		}
		docs = []string{string(raw)}
	}
	if dir := os.Getenv("SCHEMA_DUMP_DIR"); dir != "" { // to look at real documents
		f, _ := os.OpenFile(filepath.Join(dir, r.schema+".jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		f.WriteString(strings.Join(docs, "\n") + "\n")
		f.Close()
	}
	for _, js := range docs {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(js))
		if err != nil {
			t.Errorf("%v: not JSON: %v\n%s", r.args, err, js)
			continue
		}
		if err := s.Validate(v); err != nil {
			t.Errorf("%v: the document does not follow docs/schemas/%s.json: %v\n%s", r.args, r.schema, err, js)
		}
		var raw any
		json.Unmarshal([]byte(js), &raw)
		checkKeys(t, raw, "")
		if m, ok := raw.(map[string]any); ok && !r.lines {
			if ec, ok := m["exit_code"].(float64); ok && int(ec) != code {
				t.Errorf("%v: exit_code %v in the document, the process exited %d", r.args, ec, code)
			}
		}
	}
}

// dataMaps are the members whose keys are data, not names: step names,
// file names, flash targets.
var dataMaps = map[string]bool{"steps_ms": true, "files": true, "flash": true}

// checkKeys requires every key of a JSON document to be snake_case, except
// in the maps of dataMaps.
func checkKeys(t testing.TB, v any, parent string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !dataMaps[parent] && !snakeCase.MatchString(k) {
				t.Errorf("JSON key %q is not snake_case", k)
			}
			checkKeys(t, x, k)
		}
	case []any:
		for _, x := range v {
			checkKeys(t, x, parent)
		}
	}
}

// agentDocument starts station agent -o json, validates the line it prints
// once it listens, and stops it with SIGTERM.
func agentDocument(t *testing.T, l *line, schemas map[string]*jsonschema.Schema, sock string) bool {
	t.Helper()
	c := l.cmd("-o", "json", "agent", "--socket", sock)
	var errb syncBuffer
	c.Stderr = &errb
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(out).ReadString('\n')
	c.Process.Signal(syscall.SIGTERM)
	werr := c.Wait()
	if err != nil || werr != nil {
		t.Errorf("station agent -o json: %v, %v\n%s", err, werr, errb.String())
		return false
	}
	validateOutput(t, schemas, schemaRun{schema: "agent", args: []string{"agent"}, lines: true}, first, 0)
	return true
}

// tamper replaces the first old in file with new.
func tamper(t testing.TB, file, old, new string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil || !bytes.Contains(b, []byte(old)) {
		t.Fatalf("tampering with %s: %v (no %q)", file, err, old)
	}
	if err := os.WriteFile(file, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeCSR writes a P-256 certificate request as PEM to path.
func writeCSR(t testing.TB, path string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "schema-device-1"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSchemaNamesMatchCode: the step and check names the schemas allow are
// the code's (station.Steps, station.VerifyChecks), in the code's order.
func TestSchemaNamesMatchCode(t *testing.T) {
	read := func(name string) map[string]any {
		b, err := os.ReadFile(filepath.Join("..", "docs", "schemas", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	enum := func(v any, path ...string) []string {
		for _, p := range path {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		var out []string
		for _, s := range v.([]any) {
			out = append(out, s.(string))
		}
		return out
	}
	for _, n := range []string{"provision", "line", "demo"} {
		s := read(n)
		for _, path := range [][]string{{"properties", "failed_step", "enum"}, {"properties", "steps_ms", "propertyNames", "enum"}} {
			if got := enum(s, path...); !slices.Equal(got, station.Steps) {
				t.Errorf("docs/schemas/%s.json %v: %v, want station.Steps %v", n, path, got, station.Steps)
			}
		}
	}
	if got := enum(read("verify"), "$defs", "station_Check", "properties", "name", "enum"); !slices.Equal(got, station.VerifyChecks) {
		t.Errorf("docs/schemas/verify.json check names %v, want station.VerifyChecks %v", got, station.VerifyChecks)
	}
}
