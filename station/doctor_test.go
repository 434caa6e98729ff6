package station

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/factory-id/station/configs"
)

// TestDoctorDisk: the disk check passes with room to spare and warns,
// naming the folder, below the threshold; one file system is reported once.
func TestDoctorDisk(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("free space is not measured on Windows")
	}
	cfg := configs.Defaults()
	dir := t.TempDir()
	cfg.Station.DB = filepath.Join(dir, "station.db")
	d := &doctor{cfg: cfg, o: DoctorOptions{ExportDir: dir}}
	c := d.disk()
	if c.Status != CheckPass || !strings.Contains(c.Detail, "database folder "+dir) || strings.Contains(c.Detail, "exports") {
		t.Errorf("disk with room: %+v", c)
	}
	defer func(old uint64) { DiskMinFree = old }(DiskMinFree)
	DiskMinFree = 1 << 62
	c = d.disk()
	if c.Status != CheckWarn || !strings.Contains(c.Detail, "low or unknown: database folder "+dir) || !strings.Contains(c.Hint, "4294967296.0 GiB") {
		t.Errorf("disk under the threshold: %+v", c)
	}
	d.o.ExportDir = filepath.Join(dir, "missing")
	DiskMinFree = 1
	if c = d.disk(); c.Status != CheckWarn || !strings.Contains(c.Detail, "exports folder "+d.o.ExportDir) {
		t.Errorf("an exports folder that does not exist: %+v", c)
	}
}
