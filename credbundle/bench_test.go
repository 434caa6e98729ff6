package credbundle_test

import (
	"testing"

	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/bundletest"
)

func BenchmarkSignVerify(b *testing.B) {
	f := bundletest.NewFixture(b)
	base := f.PKI.BaseBundle(b, "SN-B")
	nb, _ := credbundle.NewBundle(base)
	b.ResetTimer()
	for b.Loop() {
		if err := nb.Sign(f.Key); err != nil {
			b.Fatal(err)
		}
		img, _ := nb.MarshalBinary()
		if _, err := credbundle.VerifyBundle(img, f.Key.Public()); err != nil {
			b.Fatal(err)
		}
	}
}
