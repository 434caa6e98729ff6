package enroll

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/childtest"
	"github.com/factory-id/station/internal/storetest"
	"github.com/factory-id/station/store"
)

// TestKilledExportLeavesNothingBehind kills (SIGKILL) a process in the
// middle of an export, its temporary folder (or file) and ledger spool
// written, and requires the next export to the same place to remove them and
// leave only its own output. A killed install that had moved the previous
// export aside gets it back.
func TestKilledExportLeavesNothingBehind(t *testing.T) {
	if os.Getenv("ENROLL_KILL_CHILD") != "" {
		killedChild()
		return
	}
	for _, format := range []string{FormatBulk, FormatCSV} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			dbPath := filepath.Join(dir, "station.db")
			db, err := store.Create(dbPath, store.Options{StationID: "line1-st03", Timeout: time.Second}, nil)
			if err != nil {
				t.Fatal(err)
			}
			storetest.PutUnits(t, db, tpmUnits(12, "SN")...)
			db.Close()
			out := filepath.Join(dir, "out", "export")
			if format == FormatCSV {
				out += ".csv"
			}
			for round := 0; round < 2; round++ {
				child := childtest.Start(t, "TestKilledExportLeavesNothingBehind",
					"ENROLL_KILL_CHILD=1", "ENROLL_KILL_DB="+dbPath, "ENROLL_KILL_OUT="+out, "ENROLL_KILL_FORMAT="+format)
				if child.Line != "written" {
					t.Fatalf("child: %q", child.Line)
				}
				child.Kill()
				hidden := hiddenEntries(t, filepath.Dir(out))
				if len(hidden) < 2 { // the spool, and the temporary folder or file
					t.Fatalf("the killed export left %v; want its spool and temporary output", hidden)
				}
				db, err := store.Open(dbPath, store.Options{Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				o := baseOpts(t, format, out)
				runExport(t, db, o)
				db.Close()
				if h := hiddenEntries(t, filepath.Dir(out)); len(h) != 0 {
					t.Fatalf("round %d: after the next export: %v", round, h)
				}
				if _, err := os.Stat(out); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func hiddenEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// killedChild writes an export and stops before recording and installing
// it, until killed.
func killedChild() {
	db, err := store.Open(os.Getenv("ENROLL_KILL_DB"), store.Options{Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	o := Options{
		Format: os.Getenv("ENROLL_KILL_FORMAT"), Out: os.Getenv("ENROLL_KILL_OUT"), StationID: "st1", Signer: ed25519Key(1),
		Profile: Profile{Line: "line1", Factory: "plant1", FirmwareVersion: "1.2.3"},
	}
	err = db.View(func(tx *bolt.Tx) error {
		_, err := Export(tx, o)
		return err
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("written")
	select {} // until killed
}

// An install killed between moving the previous export aside and moving the
// new one into place leaves no export under the name: the next run puts the
// previous one back before it starts.
func TestKilledInstallRestoresPreviousExport(t *testing.T) {
	ended := exec.Command(os.Args[0], "-test.run=^$")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "export")
	old := filepath.Join(dir, fmt.Sprintf(".export.tmp-%d-123.old", ended.Process.Pid))
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, ManifestFile), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cleanStale(out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, ManifestFile)); err != nil {
		t.Fatalf("previous export not restored: %v", err)
	}
	if h := hiddenEntries(t, dir); len(h) != 0 {
		t.Fatalf("left %v", h)
	}
}
