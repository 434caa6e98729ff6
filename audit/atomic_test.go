package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/childtest"
)

// exportState is what an export may leave behind: the folders beside it,
// the number of records, the export events and the pinned sizes.
type exportState struct {
	entries, records, exports, pinned int
	checkpoints                       string
}

func stateOf(t *testing.T, db *bolt.DB, parent string) exportState {
	t.Helper()
	var s exportState
	ents, _ := os.ReadDir(parent)
	s.entries = len(ents)
	db.View(func(tx *bolt.Tx) error {
		tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			s.records++
			if r, err := Parse(v); err == nil && r.Event == EventExport {
				s.exports++
			}
			return nil
		})
		s.pinned = tx.Bucket(bucketPinned).Stats().KeyN
		var sizes []uint64
		tx.Bucket(bucketCheckpoints).ForEach(func(k, _ []byte) error { sizes = append(sizes, beUint(k)); return nil })
		s.checkpoints = fmt.Sprint(sizes)
		return nil
	})
	return s
}

// TestExportFailureLeavesNothing makes each stage of an export fail (a write
// that fails as on a full disk, the verification, the installation) and
// requires no folder under the final name, no temporary folder, and no
// export record or pinned checkpoint.
func TestExportFailureLeavesNothing(t *testing.T) {
	l, db := newTestLog(t, testKey(1))
	addUnits(t, l, db, 0, 5)
	parent := t.TempDir()
	out := filepath.Join(parent, "export")
	before := stateOf(t, db, parent)
	full := errors.New("no space left on device")
	for _, tc := range []struct {
		name string
		hook func(tmp string) error
	}{
		{"disk full", func(string) error { return full }},
		{"records damaged on disk", func(tmp string) error {
			return os.WriteFile(filepath.Join(tmp, FileRecordsJSONL), []byte("x\n"), 0o644)
		}},
		{"final folder taken meanwhile", func(string) error {
			if err := os.Mkdir(out, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(out, "other"), nil, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l.afterWrite = tc.hook
			defer func() { l.afterWrite = nil; os.RemoveAll(out) }()
			_, err := l.Export(out, ExportOptions{})
			if err == nil {
				t.Fatal("export succeeded")
			}
			t.Log(err)
			if _, serr := os.Stat(filepath.Join(out, FileCheckpoint)); serr == nil {
				t.Fatal("an export folder under the final name")
			}
			after := stateOf(t, db, parent)
			if _, serr := os.Stat(out); serr == nil {
				after.entries-- // the folder someone else made
			}
			if after != before {
				t.Fatalf("export that failed left %+v, before %+v", after, before)
			}
		})
	}
	// A good export, into the empty folder given, now succeeds, records
	// itself and pins its checkpoint.
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := l.Export(out, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := stateOf(t, db, parent)
	if after.exports != before.exports+1 || after.pinned != before.pinned+1 || after.entries != before.entries+1 {
		t.Fatalf("after a good export %+v, before %+v", after, before)
	}
	if _, err := VerifyExport(out, l.Public(), nil); err != nil || res.Records != uint64(before.records) {
		t.Fatalf("export: %v, %d records of %d", err, res.Records, before.records)
	}
}

// TestExportKilled kills (SIGKILL) a process in the middle of an export,
// once its files are written and before they are installed, and requires
// no folder under the final name and no export record or pinned checkpoint;
// the next export removes the killed one's temporary folder.
func TestExportKilled(t *testing.T) {
	if path := os.Getenv("AUDIT_EXPORT_CHILD"); path != "" {
		exportChild(path)
		return
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "station.db")
	db := openTestDB(t, path)
	l, err := Open(db, "line1-st03", "test", testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	addUnits(t, l, db, 0, 5)
	parent := filepath.Join(dir, "out")
	os.Mkdir(parent, 0o755)
	before := stateOf(t, db, parent)
	db.Close()

	// The child says when its export is written and about to be installed.
	child := childtest.Start(t, "TestExportKilled", "AUDIT_EXPORT_CHILD="+path)
	tmp, ok := strings.CutPrefix(child.Line, "written ")
	if !ok {
		t.Fatalf("child: %q", child.Line)
	}
	if _, err := os.Stat(filepath.Join(tmp, FileRecordsJSONL)); err != nil {
		t.Fatalf("the child's temporary export: %v", err)
	}
	child.Kill()

	db = openTestDB(t, path)
	l, err = Open(db, "line1-st03", "test", testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(parent, "export")
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a killed export left a folder under the final name")
	}
	after := stateOf(t, db, parent)
	after.entries-- // the killed run's temporary folder
	if after != before {
		t.Fatalf("a killed export left %+v, before %+v", after, before)
	}
	mustVerify(t, db, l.Public(), nil)
	if _, err := l.Export(out, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err == nil {
		t.Fatal("the killed export's temporary folder is still there")
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Fatalf("beside the export: %v", ents)
	}
}

func exportChild(path string) {
	_, l := childLog(path, "test")
	l.afterWrite = func(tmp string) error {
		fmt.Println("written", tmp)
		select {} // until killed
	}
	_, err := l.Export(filepath.Join(filepath.Dir(path), "out", "export"), ExportOptions{})
	fmt.Fprintln(os.Stderr, "export returned:", err)
	os.Exit(1)
}
