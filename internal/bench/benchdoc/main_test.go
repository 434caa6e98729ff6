package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/factory-id/station/internal/bench
BenchmarkStationVsReference-2   	       1	         0.6500 ratio	       400.0 reference-ms/unit	       100.0 reference-srk-ms	       260.0 station-ms/unit	       140.0 station-outside-steps-ms	       110.0 station-steps-ms	        50.00 station-tpm-ms	        30.00 station-srk-ms	        14.00 process-start-ms	       120.0 issuer-key-unlock-ms	         7.000 units-each
BenchmarkThroughput/fixtures-2-2         	       1	       94.00 ms/unit	     38238 units/hour
BenchmarkProvisionDiscreteTPM/Infineon_SLB9672/ek-persisted-2         	       1	      2171 model-ms/unit
--- BENCH: BenchmarkProvisionDiscreteTPM/Infineon_SLB9672/ek-persisted-2
    bench_test.go:159: Infineon SLB9672 (SPI 43 MHz), EK persisted true: 2171 ms/unit, 97.8% in the TPM (2123 ms; the necessary commands: 2058 ms)
          steps ms: open+preflight 10, ek 29, srk 1607
          commands (per unit, ms): CreatePrimary(RSA) 1.0x 1568, Sign 1.0x 36
--- BENCH: BenchmarkProvisionDiscreteTPM/sleeping/Infineon_SLB9672/ek-persisted-2
    bench_test.go:159: Infineon SLB9672 (SPI 43 MHz), EK persisted true: 2217 ms/unit, 95.9% in the TPM
          steps ms: open+preflight 10
          commands (per unit, ms): Sign 1.0x 36
BenchmarkAppendUnit-2   	       1	      5000 units/s	     40000 records/s
PASS
`

func doc(t *testing.T, out string) string {
	t.Helper()
	var b bytes.Buffer
	write(&b, parse([]byte(out)), host{cpu: "2 × test CPU", goVersion: "go-test", swtpm: "swtpm-test", load: "1 1 1"})
	return b.String()
}

// TestDocument checks that one run's numbers land in the document, that a
// missed target says by how much, and that what did not run says so.
func TestDocument(t *testing.T) {
	d := doc(t, sample)
	for _, want := range []string{
		"2 × test CPU", "go-test", "swtpm-test",
		"| station, one process per unit | 260 |", "| reference script | 400 |", "**0.65×**",
		"**The target is missed**, by 2.6× (260 ms a unit where 100 ms would meet it: 160 ms over)",
		"| srk | 30.0 | 100 |", "| **in the TPM** (station's `tpm_ms`) | 50 |",
		"| 2 | 94 | 38238 |", "| 8 | not run | not run |",
		"| Infineon SLB9672 (SPI 43 MHz) | yes | 2171 | 97.8% | 1658 | 2123 | 2058 | +3.2% |",
		"CreatePrimary(RSA) 1.0x 1568",
		"Cross-check: the Infineon SLB9672 with the model sleeping (end to end, as on the chip, wall clock): 2217 ms per unit.",
		"5000 units/s (40000 records/s)", "`BenchmarkExport100k` | not run",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("the document lacks %q:\n%s", want, d)
		}
	}
	if strings.Count(d, "| Infineon SLB9672") != 1 {
		t.Errorf("the sleeping cross-check is not a row of the chip table:\n%s", d)
	}
	met := doc(t, strings.Replace(sample, "260.0 station-ms/unit", "90.0 station-ms/unit", 1))
	if !strings.Contains(met, "The target is met.") || strings.Contains(met, "missed") {
		t.Errorf("90 ms against 400 ms meets the 0.25× target:\n%s", met)
	}
	none := doc(t, "PASS\n")
	if !strings.Contains(none, "Not run (tpm2-tools") || !strings.Contains(none, "Not run.") {
		t.Errorf("a run without the benchmarks must say they did not run:\n%s", none)
	}
}

// TestLineSection checks the station line section: its numbers, the
// target missed by how much with where the outside time goes, met when the
// share is within it, and "Not run" without the benchmark.
func TestLineSection(t *testing.T) {
	const line = `BenchmarkLine-2   	       1	        40.00 %outside-tpm	         6.438 certificate-ms	       200.0 ms/unit	        80.00 outside-tpm-ms/unit	       120.0 tpm-ms/unit	        12.00 session-per-unit-ms	         7.000 units
BenchmarkLineSteps-2   	       1	         7.632 certificate-ms	         1.032 certificate-tpm-ms	        19.83 flash-ms	         0.1990 flash-tpm-ms	        51.50 srk-ms	        37.69 srk-tpm-ms	        15.92 open+journal-ms	         0.1760 open+journal-tpm-ms	         1.250 fsync-ms	       140.0 ms/unit	        77.00 tpm-ms/unit	        21.00 station-cpu-ms/unit
PASS
`
	d := doc(t, line)
	for _, want := range []string{
		"## station line: the time outside TPM commands", "over 7 fresh swtpm units",
		"| unit, serial typed to result read | 200 |", "| in TPM commands | 120 |", "| outside TPM commands | 80 |",
		"| **outside share** (target ≤ 10%) | **40%** |",
		"**The target is missed**, by 4.0× (40% of the unit outside TPM commands; with 120 ms in the TPM, at most\n13 ms outside would meet it: 67 ms over)",
		"| flash | 19.8 | 0.2 | 19.6 |", "| srk | 51.5 | 37.7 | 13.8 |", "| open+journal | 15.9 | 0.2 | 15.7 |",
		"| record | not run | | |", "| 12.0 | 0 | 12.0 |", "its RSA SRK: 38 ms", "fsync costs 1.25 ms\n  on this disk", "the unit took 140 ms, 77 in the TPM, so 63 outside", "CPU time (user and system, rusage) was 21 ms", "(21 ms where the TPM time allows 9)",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("the station line section lacks %q:\n%s", want, d)
		}
	}
	met := doc(t, strings.Replace(line, "40.00 %outside-tpm", "8.000 %outside-tpm", 1))
	if i := strings.Index(met, "## station line"); i < 0 || !strings.Contains(met[i:], "**8%** |\n\nThe target is met.") || strings.Contains(met[i:], "**The target is missed**, by 0") {
		t.Errorf("8%% outside meets the 10%% target:\n%s", met)
	}
	if none := doc(t, "PASS\n"); !strings.Contains(none, "## station line: the time outside TPM commands\n\n") ||
		!strings.Contains(none, "Not run (swtpm missing") {
		t.Errorf("a run without BenchmarkLine must say so:\n%s", none)
	}
}
