package audit

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkAppendUnit appends units with one durable bbolt commit (fsync)
// each: seven records and a signed checkpoint, as a provisioning fixture
// does. One op is 100 units, so `-benchtime 1x` measures something.
func BenchmarkAppendUnit(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "station.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	l, err := Open(db, "bench-st", "bench", testKey(1))
	if err != nil {
		b.Fatal(err)
	}
	const unitsPerOp = 100
	b.ResetTimer()
	start := time.Now()
	for u := 0; u < b.N*unitsPerOp; u++ {
		err := db.Update(func(tx *bolt.Tx) error {
			for i, s := range unitSteps {
				if _, err := l.Append(tx, Event{Serial: fmt.Sprintf("SN%08d", u), Type: s, Operator: "bench", Payload: benchPayload(u, i)}); err != nil {
					return err
				}
			}
			_, err := l.Checkpoint(tx)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N*unitsPerOp)/el, "units/s")
	b.ReportMetric(float64(b.N*unitsPerOp*len(unitSteps))/el, "records/s")
}

func benchPayload(u, i int) map[string]any {
	return map[string]any{"step": i, "ek_sha256": fmt.Sprintf("%064x", u), "handle": "0x81000010", "ms": 12.5}
}

// buildLog writes n records (units of seven, a checkpoint after each unit)
// quickly: many units per transaction and no fsync, since only verification
// is measured.
func buildLog(b *testing.B, path string, n int) (*Log, *bolt.DB) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		b.Fatal(err)
	}
	l, err := Open(db, "bench-st", "bench", testKey(1))
	if err != nil {
		b.Fatal(err)
	}
	const unitsPerTx = 2000
	for u := 0; u*len(unitSteps) < n; {
		err := db.Update(func(tx *bolt.Tx) error {
			for k := 0; k < unitsPerTx && u*len(unitSteps) < n; k, u = k+1, u+1 {
				for i, s := range unitSteps {
					if _, err := l.Append(tx, Event{Serial: fmt.Sprintf("SN%08d", u), Type: s, Operator: "bench", Payload: benchPayload(u, i)}); err != nil {
						return err
					}
				}
				if _, err := l.Checkpoint(tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Sync(); err != nil {
		b.Fatal(err)
	}
	return l, db
}

// BenchmarkVerify1M verifies a log of a million records (1,000,006: whole
// units) from the database and from an export, on one core, and reports
// records/s, the bytes allocated per verification (flat: the verifier
// streams; see also TestVerifyMemoryFlat) and the heap at the end.
func BenchmarkVerify1M(b *testing.B) {
	dir := b.TempDir()
	start := time.Now()
	l, db := buildLog(b, filepath.Join(dir, "station.db"), 1_000_000)
	defer db.Close()
	export := filepath.Join(dir, "export")
	if _, err := l.Export(export, ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Logf("built and exported the log in %v", time.Since(start))

	for _, tc := range []struct {
		name   string
		verify func() (*Report, error)
	}{
		{"db", func() (*Report, error) { return Verify(db, l.Public(), nil) }},
		{"export", func() (*Report, error) { return VerifyExport(export, l.Public(), nil) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			var records uint64
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				rep, err := tc.verify()
				if err != nil {
					b.Fatal(err)
				}
				records += rep.Records
			}
			el := time.Since(start).Seconds()
			b.StopTimer()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(records)/el, "records/s")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(1<<10), "KiB-alloc/verify")
			b.ReportMetric(float64(after.HeapAlloc)/(1<<20), "heap-MiB")
		})
	}
}
