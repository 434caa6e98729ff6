package enroll

import (
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/store"
)

// fillDB writes n provisioned TPM units, 10,000 per transaction.
func fillDB(b *testing.B, n int) *store.DB {
	b.Helper()
	db := openDB(b)
	ca := newCA(b, "line", nil)
	leaf := ca.leaf(b, "x") // the same 500-byte certificate for all: size matters, not content
	for start := 0; start < n; start += 10000 {
		err := db.Update(func(tx *bolt.Tx) error {
			for i := start; i < min(n, start+10000); i++ {
				s := fmt.Sprintf("SN%07d", i)
				u := tpmUnit(s, s, i)
				u.Cert, u.Chain, u.CertSHA256 = leaf, [][]byte{ca.cert.Raw}, "00"
				if err := store.PutUnit(tx, u); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return db
}

// peakHeap samples, every 5 ms until stop is called, the live heap as the
// last GC measured it (garbage not counted).
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

func benchExport(b *testing.B, n int, format string) { benchExportAgain(b, n, format, false) }

// benchExportAgain measures an export; with again, a second full export of
// the same units (nothing changed: no bookkeeping is written).
func benchExportAgain(b *testing.B, n int, format string, again bool) {
	db := fillDB(b, n)
	dir := b.TempDir()
	if again {
		runExport(b, db, baseOpts(b, format, filepath.Join(dir, "first")))
	}
	runtime.GC()
	base := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(base)
	b.ResetTimer()
	stop := peakHeap()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		o := baseOpts(b, format, filepath.Join(dir, fmt.Sprintf("out%d", i)))
		if format == FormatCSV {
			o.Out += ".csv"
		}
		res := runExport(b, db, o)
		if format == FormatBulk && res.Manifest.Counts.Enrolled != n {
			b.Fatalf("exported %d of %d", res.Manifest.Counts.Enrolled, n)
		}
	}
	el := time.Since(start)
	peak := stop()
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/el.Seconds(), "units/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-live-heap-MB")
	b.ReportMetric(float64(int64(peak)-int64(base[0].Value.Uint64()))/(1<<20), "export-heap-MB")
}

// BenchmarkExport100k exports 100,000 units as dps-bulk (10,000 files plus
// the signed manifest); compare peak-heap-MB with BenchmarkExport10k to see
// memory stay flat.
func BenchmarkExport100k(b *testing.B) { benchExport(b, 100000, FormatBulk) }

func BenchmarkExport10k(b *testing.B) { benchExport(b, 10000, FormatBulk) }

func BenchmarkExportCSV100k(b *testing.B) { benchExport(b, 100000, FormatCSV) }

// BenchmarkReexport100k is a second full export of the same 100,000 units:
// the bookkeeping is unchanged, so nothing but the bulk files is held.
func BenchmarkReexport100k(b *testing.B) { benchExportAgain(b, 100000, FormatBulk, true) }
