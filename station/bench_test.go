package station

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
)

// BenchmarkProvisionSwtpm provisions fresh swtpm units (made by
// swtpm_setup, outside the timing) one after another on one line and
// reports the median time per unit and the share of it spent waiting for
// TPM commands.
func BenchmarkProvisionSwtpm(b *testing.B) {
	const units = 10
	vendor := swtpmtest.Start(b, swtpmtest.Options{}).CA
	l := newTestLine(b, trustSwtpm(b, vendor))
	var total, tpm []float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		insts := make([]*swtpmtest.Instance, units)
		for u := range insts {
			insts[u] = swtpmtest.Start(b, swtpmtest.Options{VendorCA: vendor})
		}
		b.StartTimer()
		for u, inst := range insts {
			serial := fmt.Sprintf("B%d-%02d", i, u)
			d := filepath.Join(l.dir, "units", serial)
			os.MkdirAll(d, 0o700)
			res, err := l.prov.Provision(b.Context(), Request{Serial: serial, TPMAddr: inst.Addr, FlashSpec: "dir:" + d})
			if err != nil {
				b.Fatal(err)
			}
			total, tpm = append(total, res.TotalMs), append(tpm, res.TPMMs)
		}
		b.StopTimer()
		for _, inst := range insts {
			inst.Stop()
		}
		b.StartTimer()
	}
	b.ReportMetric(median(total), "ms/unit(median)")
	b.ReportMetric(median(tpm), "tpm-ms/unit(median)")
	b.ReportMetric(100*sum(tpm)/sum(total), "%in-tpm")
}

// BenchmarkProvisionSimulator is the same on the in-process simulator.
func BenchmarkProvisionSimulator(b *testing.B) {
	l := newTestLine(b, nil)
	var total []float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tpm := l.simUnit()
		b.StartTimer()
		serial := fmt.Sprintf("S-%04d", i)
		res, err := l.provision(Request{Serial: serial, TPM: tpm, TPMAddr: "sim"})
		if err != nil {
			b.Fatal(err)
		}
		total = append(total, res.TotalMs)
		b.StopTimer()
		tpm.Close()
		b.StartTimer()
	}
	b.ReportMetric(median(total), "ms/unit(median)")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func sum(xs []float64) float64 {
	var t float64
	for _, x := range xs {
		t += x
	}
	return t
}
