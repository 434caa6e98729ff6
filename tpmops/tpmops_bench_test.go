package tpmops

import (
	"slices"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/google/go-tpm/tpm2"
)

// samplesPerIter is how many timed runs each benchmark iteration makes, so
// that `make bench` (-benchtime 1x) still reports a median.
const samplesPerIter = 15

// evict removes a persisted key (benchmark setup only, not timed).
func evict(b testing.TB, tp *TPM, h tpm2.TPMHandle) {
	b.Helper()
	k, err := tp.ReadPublic(h)
	if err != nil {
		return
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: h, Name: tpm2.TPM2BName{Buffer: k.Name}},
		PersistentHandle: h,
	}).Execute(tp.Transport()); err != nil {
		b.Fatal(err)
	}
}

// measure runs setup (untimed) and op (timed) samplesPerIter times per
// iteration and reports the median and 90th percentile in milliseconds.
func measure(b *testing.B, setup func(), op func() error) {
	var ds []time.Duration
	for i := 0; i < b.N; i++ {
		for s := 0; s < samplesPerIter; s++ {
			b.StopTimer()
			if setup != nil {
				setup()
			}
			b.StartTimer()
			start := time.Now()
			if err := op(); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(ds[len(ds)/2]), "ms-median")
	b.ReportMetric(ms(ds[len(ds)*9/10]), "ms-p90")
	b.ReportMetric(0, "ns/op")
}

func benchTPMs(b *testing.B, fn func(b *testing.B, tp *TPM)) {
	for _, name := range []string{"swtpm", "sim"} {
		b.Run(name, func(b *testing.B) {
			addr := "sim"
			if name == "swtpm" {
				addr = swtpmtest.Start(b, swtpmtest.Options{}).Addr
			}
			tp, err := Open(addr)
			if err != nil {
				b.Fatal(err)
			}
			defer tp.Close()
			fn(b, tp)
			if hs, err := tp.Transients(); err != nil || len(hs) != 0 {
				b.Fatalf("leaked %v (%v)", hs, err)
			}
		})
	}
}

// BenchmarkEnsureEK: a unit whose RSA EK is not persisted yet (CreatePrimary
// + EvictControl), and one where it is (CreatePrimary + compare).
func BenchmarkEnsureEK(b *testing.B) {
	benchTPMs(b, func(b *testing.B, tp *TPM) {
		b.Run("persist", func(b *testing.B) {
			measure(b, func() { evict(b, tp, EKHandleRSA) }, func() error {
				_, _, err := tp.EnsureEK(RSA2048, nil)
				return err
			})
		})
		b.Run("present", func(b *testing.B) {
			measure(b, nil, func() error {
				_, _, err := tp.EnsureEK(RSA2048, nil)
				return err
			})
		})
	})
}

// BenchmarkReadEK: proving a persisted EK's shape by reading (ReadPublic
// and a comparison), what provision and verify do instead of EnsureEK's
// CreatePrimary when a vendor certificate certifies the key.
func BenchmarkReadEK(b *testing.B) {
	benchTPMs(b, func(b *testing.B, tp *TPM) {
		if _, _, err := tp.EnsureEK(RSA2048, nil); err != nil {
			b.Fatal(err)
		}
		measure(b, nil, func() error {
			_, err := tp.ReadEK(RSA2048)
			return err
		})
	})
}

// BenchmarkEnsureSRK: RSA SRK created and persisted; then reused by recorded Name.
func BenchmarkEnsureSRK(b *testing.B) {
	benchTPMs(b, func(b *testing.B, tp *TPM) {
		b.Run("persist", func(b *testing.B) {
			measure(b, func() { evict(b, tp, SRKHandleRSA) }, func() error {
				_, _, err := tp.EnsureSRK(RSA2048, nil, nil)
				return err
			})
		})
		srk, _, err := tp.EnsureSRK(RSA2048, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("recorded", func(b *testing.B) {
			measure(b, nil, func() error {
				_, _, err := tp.EnsureSRK(RSA2048, nil, srk.Name)
				return err
			})
		})
	})
}

// BenchmarkDeviceKey: CreateDeviceKey + PersistDeviceKey under the RSA SRK.
func BenchmarkDeviceKey(b *testing.B) {
	benchTPMs(b, func(b *testing.B, tp *TPM) {
		srk, _, err := tp.EnsureSRK(RSA2048, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		measure(b, func() { evict(b, tp, DefaultDeviceKeyHandle) }, func() error {
			pub, priv, err := tp.CreateDeviceKey(srk)
			if err != nil {
				return err
			}
			_, err = tp.PersistDeviceKey(srk, pub, priv, DefaultDeviceKeyHandle, nil)
			return err
		})
	})
}

// BenchmarkChangeAuth: one HierarchyChangeAuth of the owner auth through the
// EK-salted parameter-encryption session (set, then cleared untimed).
func BenchmarkChangeAuth(b *testing.B) {
	benchTPMs(b, func(b *testing.B, tp *TPM) {
		ek, _, err := tp.EnsureEK(RSA2048, nil)
		if err != nil {
			b.Fatal(err)
		}
		secret := []byte("0123456789abcdef0123456789abcdef")
		set := false
		measure(b, func() {
			if set {
				if err := tp.ChangeAuth(Owner, secret, nil, ek); err != nil {
					b.Fatal(err)
				}
			}
			set = true
		}, func() error {
			return tp.ChangeAuth(Owner, nil, secret, ek)
		})
		if err := tp.ChangeAuth(Owner, secret, nil, ek); err != nil {
			b.Fatal(err)
		}
	})
}
