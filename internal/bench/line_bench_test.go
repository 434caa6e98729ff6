package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
)

// BenchmarkLine runs one `station line -o json` session (one process: the
// line key unlocked and the doctor run once) over BENCH_UNITS fresh swtpm
// units, each on its own fixture (swtpm_setup, outside the timing), and
// types the next serial only when the previous unit's JSON line is read, so
// units run one at a time. Per unit: the wall clock from the serial typed
// to its result read (what the operator waits for), the time inside TPM
// commands (the result's tpm_ms: the transport's stats) and so the share
// outside TPM commands, which issue 15 wants at most 10% of the unit; and
// where the outside time goes: each step's time, the unit's time outside
// its steps (journal, preflight, database) and the session's own per-unit
// work outside the provisioning (reading the scan, the recorded-serial
// lookup, the audit log's head check, the JSON line).
func BenchmarkLine(b *testing.B) {
	needTools(b, "swtpm", "swtpm_setup", "openssl")
	fixture := swtpmtest.Start(b, swtpmtest.Options{})
	l := newLine(b, fixture)
	n := units(b)
	var wall, tpm, total, stepsSum, session []float64
	stepMs := map[string][]float64{}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var fx []string
		var insts []*swtpmtest.Instance
		for u := 0; u < n; u++ {
			inst := swtpmtest.Start(b, swtpmtest.Options{VendorCA: fixture.CA})
			insts = append(insts, inst)
			fx = append(fx, fmt.Sprintf("f%d=%s", u, inst.Addr))
		}
		units := filepath.Join(l.dir, "line-units")
		os.MkdirAll(units, 0o700)
		c := l.cmd([]string{"STATION_LINE_FIXTURES=" + strings.Join(fx, ","), "STATION_FLASH_TARGET=dir:" + filepath.Join(units, "{serial}")},
			"line", "-o", "json")
		in, err := c.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		outPipe, err := c.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		var stderr strings.Builder
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		out := bufio.NewReader(outPipe)
		b.StartTimer()
		for u := 0; u < n; u++ {
			serial := fmt.Sprintf("LB-%d-%02d", i, u)
			t0 := time.Now()
			fmt.Fprintf(in, "%s,f%d\n", serial, u)
			line, err := out.ReadBytes('\n')
			w := msSince(t0)
			if err != nil {
				b.Fatalf("station line: unit %s: %v\n%s", serial, err, stderr.String())
			}
			var r struct {
				provisionResult
				Result string `json:"result"`
			}
			if err := json.Unmarshal(line, &r); err != nil || r.Result != "pass" {
				b.Fatalf("station line: unit %s: %v: %s\n%s", serial, err, line, stderr.String())
			}
			wall, tpm, total = append(wall, w), append(tpm, r.TPMMs), append(total, r.TotalMs)
			s := 0.0
			for _, st := range steps {
				stepMs[st] = append(stepMs[st], r.StepsMs[st])
				s += r.StepsMs[st]
			}
			stepsSum, session = append(stepsSum, s), append(session, w-r.TotalMs)
		}
		b.StopTimer()
		in.Close()
		io.Copy(io.Discard, out)
		if err := c.Wait(); err != nil {
			b.Fatalf("station line at the end of input: %v\n%s", err, stderr.String())
		}
		for _, inst := range insts {
			inst.Stop()
		}
		b.StartTimer()
	}
	outside := make([]float64, len(wall))
	share := make([]float64, len(wall))
	unitOutsideSteps := make([]float64, len(wall))
	for i := range wall {
		outside[i] = wall[i] - tpm[i]
		share[i] = 100 * outside[i] / wall[i]
		unitOutsideSteps[i] = total[i] - stepsSum[i]
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(len(wall)), "units")
	b.ReportMetric(median(wall), "ms/unit")
	b.ReportMetric(median(tpm), "tpm-ms/unit")
	b.ReportMetric(median(outside), "outside-tpm-ms/unit")
	b.ReportMetric(median(share), "%outside-tpm")
	b.ReportMetric(median(total), "provision-ms/unit")
	b.ReportMetric(median(unitOutsideSteps), "unit-outside-steps-ms")
	b.ReportMetric(median(session), "session-per-unit-ms")
	for _, st := range steps {
		b.ReportMetric(median(stepMs[st]), st+"-ms")
	}
}
