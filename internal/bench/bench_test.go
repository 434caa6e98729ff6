package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/swtpmtest"
)

// Steps in the order both station and reference.sh report them.
var steps = []string{"ek", "srk", "device-key", "ownership", "certificate", "flash", "record"}

// units is how many units each side provisions: BENCH_UNITS, default 7.
func units(b *testing.B) int {
	n := 7
	if v := os.Getenv("BENCH_UNITS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("BENCH_UNITS=%q: want a positive number", v)
		}
	}
	return n
}

// BenchmarkStationVsReference provisions fresh swtpm units (swtpm_setup,
// outside the timing) alternately with the station program (one process
// per unit: `station provision --serial S --tpm T --flash dir:D -o json`,
// the line key an encrypted PEM opened with its password from the
// environment, as on a line) and with scripts/bench/reference.sh, and
// reports each side's median wall-clock time per unit (process start to
// exit), the ratio, and each side's per-step medians. Station's steps come
// from its JSON output (steps_ms, tpm_ms); the script's from its own clock.
func BenchmarkStationVsReference(b *testing.B) {
	needTools(b, refTools...)
	needProvider(b)
	fixture := swtpmtest.Start(b, swtpmtest.Options{})
	l := newLine(b, fixture)
	n := units(b)
	var st, ref, stTPM, stProc, stSteps0 []float64
	stSteps, refSteps := map[string][]float64{}, map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for u := 0; u < n; u++ {
			b.StopTimer()
			a := swtpmtest.Start(b, swtpmtest.Options{VendorCA: fixture.CA})
			serial := fmt.Sprintf("ST-%d-%02d", i, u)
			dir := filepath.Join(l.dir, "units", serial)
			os.MkdirAll(dir, 0o700)
			b.StartTimer()
			t0 := time.Now()
			out := l.run(b, nil, "provision", "--serial", serial, "--tpm", a.Addr, "--flash", "dir:"+dir, "-o", "json")
			wall := msSince(t0)
			b.StopTimer()
			rs := decodeResults(b, out)
			if len(rs) != 1 || rs[0].TotalMs == 0 {
				b.Fatalf("station provision -o json: want one result with its timings:\n%s", out)
			}
			st, stTPM, stProc = append(st, wall), append(stTPM, rs[0].TPMMs), append(stProc, wall-rs[0].TotalMs)
			stSteps0 = append(stSteps0, rs[0].TotalMs)
			for _, s := range steps {
				stSteps[s] = append(stSteps[s], rs[0].StepsMs[s])
			}
			a.Stop()

			r := swtpmtest.Start(b, swtpmtest.Options{VendorCA: fixture.CA})
			b.StartTimer()
			t0 = time.Now()
			rsteps := l.reference(b, r, fmt.Sprintf("RF-%d-%02d", i, u))
			wall = msSince(t0)
			b.StopTimer()
			ref = append(ref, wall)
			for _, s := range steps {
				refSteps[s] = append(refSteps[s], rsteps[s])
			}
			r.Stop()
			b.StartTimer()
		}
	}
	// Where station's time outside its steps goes: the process itself
	// (start, flags, config: `station --help` exits after the flags), and
	// the line key's unlock (PBKDF2, 600,000 iterations) that every
	// process pays.
	var start, unlock []float64
	for range 5 {
		t0 := time.Now()
		l.run(b, nil, "--help")
		start = append(start, msSince(t0))
		t0 = time.Now()
		k, err := certgen.OpenKey(filepath.Join(l.dir, "pki/line/ca.key"), func() ([]byte, error) { return []byte(linePW), nil })
		if err != nil {
			b.Fatal(err)
		}
		unlock = append(unlock, msSince(t0))
		k.Close()
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(len(st)), "units-each")
	b.ReportMetric(median(start), "process-start-ms")
	b.ReportMetric(median(unlock), "issuer-key-unlock-ms")
	b.ReportMetric(median(st), "station-ms/unit")
	b.ReportMetric(median(ref), "reference-ms/unit")
	b.ReportMetric(median(st)/median(ref), "ratio")
	b.ReportMetric(median(stTPM), "station-tpm-ms")
	b.ReportMetric(median(stProc), "station-outside-steps-ms")
	b.ReportMetric(median(stSteps0), "station-steps-ms")
	for _, s := range steps {
		b.ReportMetric(median(stSteps[s]), "station-"+s+"-ms")
		b.ReportMetric(median(refSteps[s]), "reference-"+s+"-ms")
	}
}

// BenchmarkThroughput provisions 2N fresh swtpm units as one batch with N
// fixtures (`station provision --batch F --parallel N`, one process), for
// N = 1, 2, 4, 8, and reports units per hour.
func BenchmarkThroughput(b *testing.B) {
	needTools(b, "swtpm", "swtpm_setup", "openssl")
	fixture := swtpmtest.Start(b, swtpmtest.Options{})
	l := newLine(b, fixture)
	for _, par := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("fixtures-%d", par), func(b *testing.B) {
			var total time.Duration
			done := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				var rows []string
				var insts []*swtpmtest.Instance
				for u := 0; u < 2*par; u++ {
					inst := swtpmtest.Start(b, swtpmtest.Options{VendorCA: fixture.CA})
					insts = append(insts, inst)
					serial := fmt.Sprintf("TP%d-%d-%02d", par, i, u)
					dir := filepath.Join(l.dir, "units", serial)
					os.MkdirAll(dir, 0o700)
					rows = append(rows, serial+","+inst.Addr+",dir:"+dir)
				}
				csv := filepath.Join(l.dir, fmt.Sprintf("batch-%d-%d.csv", par, i))
				os.WriteFile(csv, []byte(strings.Join(rows, "\n")+"\n"), 0o644)
				b.StartTimer()
				t0 := time.Now()
				out := l.run(b, nil, "provision", "--batch", csv, "--parallel", strconv.Itoa(par), "-o", "json")
				total += time.Since(t0)
				b.StopTimer()
				if rs := decodeResults(b, out); len(rs) != len(rows) {
					b.Fatalf("batch of %d: %d results:\n%s", len(rows), len(rs), out)
				}
				done += len(rows)
				for _, inst := range insts {
					inst.Stop()
				}
				b.StartTimer()
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(done)/total.Hours(), "units/hour")
			b.ReportMetric(float64(total.Milliseconds())/float64(done), "ms/unit")
		})
	}
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
