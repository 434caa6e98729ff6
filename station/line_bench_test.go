//go:build linux

package station

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/internal/tpmlatency"
	"github.com/factory-id/station/tpmops"
)

// BenchmarkLineSteps splits a line unit's time on swtpm between the TPM
// and everything else, step by step: what internal/bench's BenchmarkLine
// (the station line program) cannot see from its JSON output, which has the
// TPM time of the whole unit only. Fresh swtpm units are provisioned in one
// process, one after another, as a line session does, each through the
// discrete-TPM model in accounting mode (no delay: it only times each
// command on the TPM underneath and files it under the step running).
// Reported per step: its time and the part inside TPM commands (median
// ms); "open+journal" is the unit's time outside its steps: the checks and
// the TPM's preflight before the first step, and the journal and audit
// commits after each step. Also the station's own CPU time per unit (what
// of the time outside the TPM is work, the rest is waiting for a core or
// the disk) and what one fsync costs on this disk.
func BenchmarkLineSteps(b *testing.B) {
	const units = 7
	vendor := swtpmtest.Start(b, swtpmtest.Options{}).CA
	l := newTestLine(b, trustSwtpm(b, vendor))
	m := tpmlatency.New(tpmlatency.Default, false)
	wall, inTPM := map[string][]float64{}, map[string][]float64{}
	var total, tpmTotal, cpu []float64
	for i := 0; i < b.N; i++ {
		for u := 0; u < units; u++ {
			b.StopTimer()
			inst := swtpmtest.Start(b, swtpmtest.Options{VendorCA: vendor})
			serial := fmt.Sprintf("LS%d-%02d", i, u)
			d := filepath.Join(l.dir, "units", serial)
			os.MkdirAll(d, 0o700)
			m.Reset()
			b.StartTimer()
			cpu0 := cpuTime(b)
			tpm, err := tpmops.OpenWrapped(inst.Addr, m.Wrap)
			if err != nil {
				b.Fatal(err)
			}
			req := Request{Serial: serial, TPM: tpm, TPMAddr: inst.Addr, FlashSpec: "dir:" + d,
				Observer: ObserverFuncs{Started: func(_, step string) { m.Mark(step) }}}
			res, err := l.prov.Provision(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			tpm.Close()
			cpu = append(cpu, msOf(cpuTime(b)-cpu0))
			b.StopTimer()
			inst.Stop()
			steps := 0.0
			for _, st := range Steps {
				steps += res.StepsMs[st]
				wall[st] = append(wall[st], res.StepsMs[st])
				inTPM[st] = append(inTPM[st], msOf(m.Step(st).Real))
			}
			// Before the first step: the TPM's preflight (its commands
			// filed under ""), the database's checks.
			open := msOf(m.Step("").Real)
			wall["open+journal"] = append(wall["open+journal"], res.TotalMs-steps)
			inTPM["open+journal"] = append(inTPM["open+journal"], open)
			total, tpmTotal = append(total, res.TotalMs), append(tpmTotal, msOf(m.Total().Real))
			b.StartTimer()
		}
	}
	// What one durable write costs on this disk: a 4 KiB write and its
	// fdatasync, as each journal commit (bbolt: two per commit) and each
	// flashed file pays.
	f, err := os.CreateTemp(l.dir, "fsync-")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var syncs []float64
	page := make([]byte, 4096)
	for range 20 {
		t0 := time.Now()
		if _, err := f.WriteAt(page, 0); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		syncs = append(syncs, msOf(time.Since(t0)))
	}
	b.ReportMetric(median(syncs), "fsync-ms")
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(total), "ms/unit")
	b.ReportMetric(median(tpmTotal), "tpm-ms/unit")
	b.ReportMetric(median(cpu), "station-cpu-ms/unit")
	for _, st := range append(append([]string{}, Steps...), "open+journal") {
		b.ReportMetric(median(wall[st]), st+"-ms")
		b.ReportMetric(median(inTPM[st]), st+"-tpm-ms")
	}
}

// cpuTime is the CPU time this process has used (user and system): the
// station's own work, not swtpm's (another process).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
