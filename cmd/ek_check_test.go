package cmd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/factory-id/station/internal/sharedtest"
)

// runStation runs the station program with args in dir (a folder with no
// station.yaml unless the test writes one).
func runStation(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	c := exec.Command(stationExe(t), args...)
	c.Dir, c.Env = dir, append(os.Environ(), env...)
	return runExit(t, c)
}

// runExit runs c and returns what it wrote and its exit code, failing the
// test when it could not run.
func runExit(t testing.TB, c *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

type ekCheckJSON struct {
	Roots struct {
		Certs   int `json:"certificates"`
		Skipped []struct {
			File string `json:"file"`
		} `json:"skipped"`
	} `json:"roots"`
	Files []struct {
		File      string   `json:"file"`
		Readable  bool     `json:"readable"`
		Chains    bool     `json:"chains"`
		Key       string   `json:"key"`
		TCGHeader bool     `json:"tcg_header"`
		Padding   int      `json:"padding"`
		Chain     []string `json:"chain"`
		Reason    string   `json:"reason"`
		Missing   []struct {
			Subject string `json:"subject"`
			SHA256  string `json:"sha256"`
		} `json:"missing"`
		ExitCode int `json:"exit_code"`
	} `json:"files"`
	Chained  int `json:"chained"`
	ExitCode int `json:"exit_code"`
}

func ekCheck(t *testing.T, args ...string) (ekCheckJSON, string, int) {
	t.Helper()
	out, errOut, code := runStation(t, t.TempDir(), nil, append([]string{"ek", "check", "-o", "json"}, args...)...)
	var rep ekCheckJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("ek check -o json: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	if rep.ExitCode != code {
		t.Fatalf("exit_code %d in JSON, process exit %d", rep.ExitCode, code)
	}
	return rep, errOut, code
}

// corpusNoCA are the corpus's TPM 2.0 certificates whose issuing CA the
// corpus does not hold (its README lists no CA for these vendors or
// signers): they must not chain, and the verdict must name the issuer.
var corpusNoCA = map[string]string{
	"google-chromeos_id-0000_eccp256_5a8511be.pem":         "Privacy CA Intermediate",
	"google-gce_vtpm_rsa2048_9f2d40c0.pem":                 "tpm_ek_v1_cloud_host-signer-0-2018-02-14",
	"microsoft-pluton_pluton-tpm-a_rsa2048_0b7e3f4b.der":   "PLUTON Firmware SVN04",
	"microsoft-pluton_pluton-tpm-a_rsa2048_7c8b2c4c.der":   "PLUTON Firmware SVN04",
	"synthetic_tcg-test_abcdef123456_eccp384_ba13d361.pem": "Platform Certificate Test CA",
	"vmware_vmware-tpm2_eccp256_e6534a28.pem":              "issuer CA not",
	"vmware_vmware-tpm2_rsa2048_8cdd06be.pem":              "issuer CA not",
}

// TestEKCheckCorpus runs every certificate of the real EK corpus through
// `station ek check` against the corpus's own CA folder: every TPM 2.0
// certificate whose CA the corpus holds chains (padded, NV-headed,
// Nuvoton's unsorted RDNs, Intel's explicit DEFAULT, ECC and RSA), the others
// name their missing issuer; the README's padding and header quirks are
// what the command reports.
func TestEKCheckCorpus(t *testing.T) {
	corpus := sharedtest.Dir(t, "ekcorpus")
	files, err := filepath.Glob(filepath.Join(corpus, "certs", "*"))
	if err != nil || len(files) < 47 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	readme, err := os.ReadFile(filepath.Join(corpus, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	quirks := map[string]string{}
	for sc := bufio.NewScanner(bytes.NewReader(readme)); sc.Scan(); {
		cols := strings.Split(sc.Text(), "|")
		if len(cols) > 7 && strings.HasPrefix(strings.TrimSpace(cols[1]), "`") {
			quirks[strings.Trim(strings.TrimSpace(cols[1]), "`")] = cols[len(cols)-2] + "|" + cols[5]
		}
	}
	if len(quirks) != len(files) {
		t.Fatalf("README describes %d files, the corpus has %d", len(quirks), len(files))
	}
	rep, errOut, code := ekCheck(t, append([]string{"--roots", filepath.Join(corpus, "cas")}, files...)...)
	if code != ExitPolicy || !strings.Contains(errOut, "do not chain") {
		t.Fatalf("exit %d, want 3 (some do not chain); stderr %s", code, errOut)
	}
	if len(rep.Roots.Skipped) != 2 {
		t.Errorf("the corpus's two non-DER STMicro originals should be named as skipped: %+v", rep.Roots.Skipped)
	}
	trailing := regexp.MustCompile(`(\d+) trailing bytes after DER`)
	tpm20 := 0
	for _, f := range rep.Files {
		name := filepath.Base(f.File)
		q, ok := quirks[name]
		if !ok {
			t.Errorf("%s: not in the README", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			if !f.Readable {
				t.Fatalf("unreadable: %s", f.Reason)
			}
			wantPad := 0
			if m := trailing.FindStringSubmatch(q); m != nil {
				wantPad, _ = strconv.Atoi(m[1])
			}
			if f.Padding != wantPad || f.TCGHeader != strings.Contains(q, "TCG PC-Client NV header") {
				t.Errorf("padding %d header %v; README: %s", f.Padding, f.TCGHeader, q)
			}
			if strings.Contains(q, "| 1.2") || strings.Contains(q, "rsaesOaep") {
				// TPM 1.2 (SHA-1 signed, expired): reported, never trusted.
				if f.Chains {
					t.Errorf("a TPM 1.2 certificate chains: %+v", f)
				}
				return
			}
			tpm20++
			if missing, ok := corpusNoCA[name]; ok {
				if f.Chains || f.ExitCode != ExitPolicy || !strings.Contains(f.Reason, missing) || !strings.Contains(f.Reason, "not in the roots folder") {
					t.Errorf("want a refusal naming %q; got chains=%v reason %q", missing, f.Chains, f.Reason)
				}
				return
			}
			if !f.Chains || f.ExitCode != 0 || len(f.Chain) == 0 {
				t.Errorf("does not chain to the corpus CAs: %s", f.Reason)
			}
		})
	}
	if tpm20 != 40 || rep.Chained != 33 {
		t.Errorf("%d TPM 2.0 certificates, %d chain; want 40 and 33", tpm20, rep.Chained)
	}
}

// TestEKCheckNamesWhatIsMissing checks real chips against the keylime
// bundle, which lacks Infineon's OPTIGA manufacturing CA 036 and STSAFE's
// CAs: the verdict names the issuer and the known CAs to add.
func TestEKCheckNamesWhatIsMissing(t *testing.T) {
	corpus := sharedtest.Dir(t, "ekcorpus")
	bundle := sharedtest.Dir(t, "tpm-vendor-cas")
	ifx := filepath.Join(corpus, "certs", "infineon_slb-9665_rsa2048_651f939f.pem")
	stsafe := filepath.Join(corpus, "certs", "stm_st33ktpm2x_rsa2048_43e7be4a.pem")
	rep, _, code := ekCheck(t, "--roots", bundle, ifx, stsafe)
	if code != ExitPolicy {
		t.Fatalf("exit %d, want 3", code)
	}
	for i, want := range [][]string{
		{"Infineon OPTIGA(TM) RSA Manufacturing CA 036"},
		{"STSAFE TPM RSA Intermediate CA 10", "STSAFE RSA Root CA 02"},
	} {
		f := rep.Files[i]
		if !strings.Contains(f.Reason, "issuer "+want[0]+" not in the roots folder") {
			t.Errorf("%s: reason %q", f.File, f.Reason)
		}
		if len(f.Missing) != len(want) {
			t.Fatalf("%s: missing %+v, want %v", f.File, f.Missing, want)
		}
		for j, w := range want {
			if !strings.Contains(f.Missing[j].Subject, w) || len(f.Missing[j].SHA256) != 64 {
				t.Errorf("%s: missing[%d] = %+v, want %s", f.File, j, f.Missing[j], w)
			}
		}
	}
	// The text output says the same, one line per missing CA.
	out, _, code := runStation(t, t.TempDir(), nil, "ek", "check", "--roots", bundle, ifx)
	if code != ExitPolicy || !strings.Contains(out, "does not chain: issuer Infineon OPTIGA(TM) RSA Manufacturing CA 036 not in the roots folder") ||
		!strings.Contains(out, "missing known CA CN=Infineon OPTIGA(TM) RSA Manufacturing CA 036") {
		t.Errorf("exit %d, text:\n%s", code, out)
	}
}

// TestEKCheckInput: exit 0 when all chain, 2 for an unreadable file or no
// roots, and nothing but the JSON document on stdout.
func TestEKCheckInput(t *testing.T) {
	corpus := sharedtest.Dir(t, "ekcorpus")
	cas := filepath.Join(corpus, "cas")
	good := filepath.Join(corpus, "certs", "stm_st33htphahb4_rsa2048_73ffb9ae.der")
	rep, _, code := ekCheck(t, "--roots", cas, good)
	if code != 0 || rep.Chained != 1 || rep.Files[0].Padding != 431 || rep.Files[0].Key != "rsa2048" {
		t.Fatalf("exit %d, %+v", code, rep)
	}
	junk := filepath.Join(t.TempDir(), "junk.bin")
	os.WriteFile(junk, bytes.Repeat([]byte{0xff}, 64), 0o644)
	rep, errOut, code := ekCheck(t, "--roots", cas, good, junk, filepath.Join(t.TempDir(), "absent.der"))
	if code != ExitUsage || rep.Chained != 1 || rep.Files[1].Readable || rep.Files[2].Readable || !strings.Contains(errOut, "2 of 3 files") {
		t.Fatalf("exit %d, stderr %s, %+v", code, errOut, rep)
	}
	// No --roots and no configured folder (the default /etc path absent).
	_, errOut, code = runStation(t, t.TempDir(), []string{"STATION_TPM_VENDOR_ROOTS=" + filepath.Join(t.TempDir(), "none")}, "ek", "check", good)
	if code != ExitUsage || !strings.Contains(errOut, "tpm.vendor_roots") {
		t.Fatalf("no roots: exit %d, stderr %s", code, errOut)
	}
	_, errOut, code = runStation(t, t.TempDir(), nil, "ek", "check", "--roots", filepath.Join(t.TempDir(), "none"), good)
	if code != ExitUsage || !strings.Contains(errOut, "--roots") {
		t.Fatalf("bad --roots: exit %d, stderr %s", code, errOut)
	}
}
