package station

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/internal/tpmlatency"
	"github.com/factory-id/station/tpmops"
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

// BenchmarkProvisionDiscreteTPM provisions simulator units through the
// discrete-TPM latency model (internal/tpmlatency) of each modelled part:
// what a unit costs on that chip, and where the time goes. The model only
// accounts (no sleeping): a unit's modelled time is its measured time
// outside the TPM plus the part's time for every command it sent. Two
// kinds of unit: the EK already persisted with its certificate in NV (as
// swtpm_setup or an OEM leaves it: station proves the EK by reading), and
// the EK not persisted (a TPM from the reel: station must derive it, one
// more RSA key generation). The last sub-benchmark runs one unit of the
// default part with the model sleeping, end to end, as a cross-check.
func BenchmarkProvisionDiscreteTPM(b *testing.B) {
	const units = 3
	l := newTestLine(b, nil)
	n := 0
	run := func(b *testing.B, part tpmlatency.Part, ekPersisted, sleep bool) {
		var total, inTPM []float64
		steps := map[string][]float64{}
		m := tpmlatency.New(part, sleep)
		kinds := map[tpmops.CommandKind]tpmlatency.Tally{}
		for i := 0; i < b.N; i++ {
			for u := 0; u < units; u++ {
				b.StopTimer()
				tpm := l.simUnitWrapped(m.Wrap)
				if !ekPersisted {
					evictAt(b, tpm, tpmops.EKHandleRSA)
				}
				n++
				serial := fmt.Sprintf("DT-%04d", n)
				req := l.request(b, tpm, serial)
				req.Observer = ObserverFuncs{Started: func(_, step string) { m.Mark(step) }}
				m.Reset()
				b.StartTimer()
				res, err := l.prov.Provision(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				tpm.Close()
				t := m.Total()
				outside := res.TotalMs - msOf(t.Real)
				if sleep { // the wall clock already holds the modelled time
					outside = res.TotalMs - msOf(t.Model)
				}
				total, inTPM = append(total, outside+msOf(t.Model)), append(inTPM, msOf(t.Model))
				for _, st := range append([]string{""}, Steps...) {
					tl := m.Step(st)
					wall := res.StepsMs[st]
					if sleep {
						wall -= msOf(tl.Model)
					} else {
						wall -= msOf(tl.Real)
					}
					steps[st] = append(steps[st], max(wall, 0)+msOf(tl.Model))
				}
				for _, k := range m.Kinds() {
					acc := kinds[k.Kind]
					acc.Commands += k.Commands
					acc.Model += k.Model
					kinds[k.Kind] = acc
				}
				b.StartTimer()
			}
		}
		floorMs := 0.0 // the modelled time of the commands the unit cannot do without
		for k, need := range necessaryCommands(ekPersisted) {
			if acc := kinds[k]; acc.Commands > 0 {
				floorMs += float64(need) * msOf(acc.Model) / float64(acc.Commands)
			}
		}
		b.ReportMetric(median(total), "model-ms/unit")
		b.ReportMetric(100*sum(inTPM)/sum(total), "%in-tpm")
		b.ReportMetric(3600e3/median(total), "units/hour/fixture")
		// Three lines (benchmark logs are cut at ten): the unit, its
		// steps, the costliest kinds of command.
		var st, ks []string
		for _, name := range append([]string{""}, Steps...) {
			label := name
			if label == "" {
				label = "open+preflight"
			}
			st = append(st, fmt.Sprintf("%s %.0f", label, median(steps[name])))
		}
		runs := float64(len(total))
		for i, k := range sortedKinds(kinds) {
			if i == 6 {
				break
			}
			ks = append(ks, fmt.Sprintf("%v %.1fx %.0f", k.Kind, float64(k.Commands)/runs, msOf(k.Model)/runs))
		}
		b.Logf("%s (%s), EK persisted %v: %.0f ms/unit, %.1f%% in the TPM (%.0f ms; the necessary commands: %.0f ms)\n  steps ms: %s\n  commands (per unit, ms): %s",
			part.Name, part.Bus, ekPersisted, median(total), 100*sum(inTPM)/sum(total), sum(inTPM)/runs, floorMs, strings.Join(st, ", "), strings.Join(ks, ", "))
	}
	for _, part := range tpmlatency.Parts {
		for _, persisted := range []bool{true, false} {
			name := strings.ReplaceAll(part.Name, " ", "_") + map[bool]string{true: "/ek-persisted", false: "/ek-not-persisted"}[persisted]
			b.Run(name, func(b *testing.B) { run(b, part, persisted, false) })
		}
	}
	b.Run("sleeping/"+strings.ReplaceAll(tpmlatency.Default.Name, " ", "_")+"/ek-persisted", func(b *testing.B) {
		run(b, tpmlatency.Default, true, true)
	})
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sortedKinds(kinds map[tpmops.CommandKind]tpmlatency.Tally) []tpmlatency.KindTally {
	out := make([]tpmlatency.KindTally, 0, len(kinds))
	for k, t := range kinds {
		out = append(out, tpmlatency.KindTally{Kind: k, Tally: t})
	}
	slices.SortFunc(out, func(a, b tpmlatency.KindTally) int { return int(b.Model - a.Model) })
	return out
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

// necessaryCommands are the TPM commands a unit's timeline cannot do
// without, and how many of each: the floor of its time on a discrete TPM.
//
//   - CreatePrimary(RSA): the SRK, RSA-2048 at 0x81000001 as the DPS SDKs
//     read it (and the EK too when it is not persisted);
//   - EvictControl: the SRK and the device key persisted (and the EK);
//   - Create(ECC) and Load: the device key, made under the SRK and loaded
//     to be persisted;
//   - Sign: the CSR, the device key's proof of possession;
//   - StartAuthSession(RSA): one session salted to the SRK, so the new
//     lockout auth never crosses the bus in clear;
//   - Create(KEYEDHASH): the lockout value sealed under the SRK before it
//     is set, so an interrupted unit can prove it on resume;
//   - HierarchyChangeAuth: the lockout auth set;
//   - ReadPublic and NV_Read: the EK and its certificate read.
//
// Everything else a unit sends (capability reads, the flushes, a second
// ReadPublic or Load) is what the benchmark reports above this floor.
func necessaryCommands(ekPersisted bool) map[tpmops.CommandKind]int {
	n := map[tpmops.CommandKind]int{
		tpmops.CreatePrimaryRSA:                                 1,
		{Code: tpm2.TPMCCEvictControl}:                          2,
		{Code: tpm2.TPMCCCreate, Alg: tpm2.TPMAlgECC}:           1,
		{Code: tpm2.TPMCCLoad}:                                  1,
		{Code: tpm2.TPMCCSign}:                                  1,
		{Code: tpm2.TPMCCStartAuthSession, Alg: tpm2.TPMAlgRSA}: 1,
		{Code: tpm2.TPMCCCreate, Alg: tpm2.TPMAlgKeyedHash}:     1,
		{Code: tpm2.TPMCCHierarchyChanegAuth}:                   1,
		{Code: tpm2.TPMCCReadPublic}:                            1,
		{Code: tpm2.TPMCCNVRead}:                                1,
	}
	if !ekPersisted {
		n[tpmops.CreatePrimaryRSA]++
		n[tpmops.CommandKind{Code: tpm2.TPMCCEvictControl}]++
	}
	return n
}
