package flash

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/factory-id/station/internal/bundletest"
)

func testFW(t testing.TB) *Firmware {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.bin")
	if err := os.WriteFile(path, bundletest.Firmware, 0o644); err != nil {
		t.Fatal(err)
	}
	fw, err := LoadFirmware(path, bundletest.FirmwareSHA())
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

// fixture is a PKI, a station key and a firmware.
type fixture struct {
	*bundletest.Fixture
	fw *Firmware
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return &fixture{Fixture: bundletest.NewFixture(t), fw: testFW(t)}
}

func (f *fixture) job(t testing.TB, serial string) Job {
	t.Helper()
	return Job{Serial: serial, Firmware: f.fw, Bundle: f.Bundle(t, serial)}
}

// symJob is a symmetric-key unit without a TPM: a clear key in the bundle.
func (f *fixture) symJob(t testing.TB, serial string, key []byte) Job {
	t.Helper()
	return Job{Serial: serial, Firmware: f.fw, Bundle: f.SymBundle(t, serial, key)}
}
