package flash

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/bundletest"
	"github.com/factory-id/station/tpmops"
)

// A 4 MiB firmware and the bundle to a folder: write, fsync, rename, read back.
func BenchmarkDirWrite4MiB(b *testing.B) {
	f := newFixture(b)
	data := make([]byte, 4<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	fw := &Firmware{Data: data, SHA256: hex.EncodeToString(sum[:])}
	bb := f.PKI.BaseBundle(b, "SN-B")
	bb.FirmwareSHA256 = fw.SHA256
	j := Job{Serial: "SN-B", Firmware: fw, Bundle: bundletest.Signed(b, bb, f.Key)}
	root := b.TempDir()
	tg, _ := Open("dir:"+root, configs.Flash{}, nil)
	b.ResetTimer()
	for b.Loop() {
		if _, err := tg[0].Write(context.Background(), j); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNVWriteSim(b *testing.B) {
	f := newFixture(b)
	tp, err := tpmops.Open("sim")
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	tg, _ := Open("tpm-nv", configs.Flash{}, tp)
	b.ResetTimer()
	for b.Loop() {
		// a new certificate each time: undefine, define, write, lock, read back
		b.StopTimer()
		j := f.job(b, "SN-B")
		b.StartTimer()
		if _, err := tg[0].Write(context.Background(), j); err != nil {
			b.Fatal(err)
		}
	}
}
