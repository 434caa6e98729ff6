package cmd

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// simBatch is a station made by `station demo` with a batch of simulated
// TPMs (no EK certificates, so the policy allows none) for tests that act
// on the database while the batch runs.
type simBatch struct {
	*line
	db, csv string
}

func newSimBatch(t *testing.T, units int) *simBatch {
	t.Helper()
	l := &line{t: t, bin: stationExe(t), dir: t.TempDir()}
	l.config = filepath.Join(l.dir, "station.yaml")
	l.env = append(os.Environ(), "STATION_CONFIG="+l.config, "STATION_TPM_REQUIRE_EK_CERT=false")
	if out, err := l.cmd("demo", "--units", "1", "--out", l.dir).CombinedOutput(); err != nil {
		t.Fatalf("station demo: %v\n%s", err, out)
	}
	var csv strings.Builder
	for i := 1; i <= units; i++ {
		csv.WriteString("B-" + string(rune('0'+i)) + ",sim:" + string(rune('0'+i)) + "\n")
	}
	b := &simBatch{line: l, db: filepath.Join(l.dir, "station.db"), csv: filepath.Join(l.dir, "batch.csv")}
	if err := os.WriteFile(b.csv, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// start runs the batch and returns once its first unit passed, with the
// process stopped (SIGSTOP): it holds the database and is between two
// steps of its second unit at most. cont resumes it and returns its exit
// code, stdout and stderr.
func (b *simBatch) start() (cont func() (int, string, string)) {
	t := b.t
	c := b.cmd("provision", "--batch", b.csv)
	var errb bytes.Buffer
	c.Stderr = &errb
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out strings.Builder
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "PASS  B-1 ") {
			break
		}
	}
	if err := c.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("stopping the batch: %v\n%s%s", err, out.String(), errb.String())
	}
	return func() (int, string, string) {
		c.Process.Signal(syscall.SIGCONT)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
		}
		err := c.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
}

// TestDatabaseDeletedMidBatch deletes the database once the first unit of
// a batch has passed: the batch must stop with exit 5 (environment), each
// later unit refused before its TPM is touched, instead of reporting every
// unit passed into a file that no longer exists.
func TestDatabaseDeletedMidBatch(t *testing.T) {
	b := newSimBatch(t, 4)
	cont := b.start()
	if err := os.Remove(b.db); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cont()
	if code != ExitEnvironment {
		t.Fatalf("batch with its database deleted: exit %d, want 5\n%s%s", code, out, errOut)
	}
	for _, serial := range []string{"B-3", "B-4"} {
		if !strings.Contains(out, "FAIL  "+serial+"  at step ek") {
			t.Errorf("%s was not refused at its first step:\n%s", serial, out)
		}
		if !strings.Contains(errOut, "unit "+serial+": step ek: station database was deleted or replaced while in use") {
			t.Errorf("%s's error does not say the database is gone:\n%s", serial, errOut)
		}
	}
	// B-2 was between two steps when the file went: it fails at its next
	// commit (or, had it finished before the stop, passed into the file
	// just before its deletion).
	if strings.Contains(errOut, "goroutine ") || !strings.Contains(errOut, "hint: stop the line") || !regexp.MustCompile(`[12] passed, [23] failed`).MatchString(errOut) {
		t.Errorf("stderr:\n%s", errOut)
	}
	if _, err := os.Stat(b.db); !os.IsNotExist(err) {
		t.Errorf("a database reappeared: %v", err)
	}
}

// TestBackupDuringBatch backs the database up while a batch holds it
// (stopped after its first unit), then restores the backup once the batch
// finished: the restored database is this station's, its audit log
// verifies and it holds the units committed before the backup.
func TestBackupDuringBatch(t *testing.T) {
	b := newSimBatch(t, 6)
	bk := filepath.Join(t.TempDir(), "backups", "station.db")
	cont := b.start()
	out, errOut, code := b.run("backup", "--out", bk)
	if code != 0 || !strings.Contains(out, "backed up") {
		cont()
		t.Fatalf("backup during the batch: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cont(); code != 0 {
		t.Fatalf("the batch after the backup: exit %d\n%s%s", code, out, errOut)
	}
	if st, err := os.Stat(bk); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	data, err := os.ReadFile(bk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.db, data, 0o600); err != nil { // the restore
		t.Fatal(err)
	}
	if out, errOut, code := b.run("audit", "verify"); code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("audit verify of the restored backup: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = b.run("units", "list")
	if code != 0 || !strings.Contains(out, "B-1 ") || !strings.Contains(out, "DEMO-0001") {
		t.Fatalf("units of the restored backup: exit %d\n%s%s", code, out, errOut)
	}
	// The line carries on from the restored database: B-1 is known.
	out, errOut, code = b.run("provision", "--serial", "B-1", "--tpm", "sim:1")
	if code != ExitPolicy || !strings.Contains(errOut, "recorded with another TPM") {
		t.Errorf("B-1 again after the restore: exit %d\n%s%s", code, out, errOut)
	}
}

func init() {
	scriptCmds["dbfile"] = dbFile
}

// dbfile cut SRC DST N|half: DST holds SRC's first N bytes (or half of them).
// dbfile random DST N: N random bytes.
// dbfile flip-root SRC DST: SRC with the page ID in the header of its root
// bucket's page inverted (a page whose header does not name itself).
// dbfile cycle SRC DST: SRC with the units bucket's root page ID rewritten
// to the root bucket's own page, a cycle in the page tree.
func dbFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: dbfile cut SRC DST N|half | random DST N | flip-root SRC DST | cycle SRC DST")
	}
	switch args[0] {
	case "cut":
		b, err := os.ReadFile(ts.MkAbs(args[1]))
		ts.Check(err)
		n := len(b) / 2
		if args[3] != "half" {
			n, err = strconv.Atoi(args[3])
			ts.Check(err)
		}
		ts.Check(os.WriteFile(ts.MkAbs(args[2]), b[:n], 0o600))
	case "random":
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		b := make([]byte, n)
		rand.Read(b)
		ts.Check(os.WriteFile(ts.MkAbs(args[1]), b, 0o600))
	case "flip-root":
		b, err := os.ReadFile(ts.MkAbs(args[1]))
		ts.Check(err)
		// bbolt's meta page: a 16-byte page header, then magic, version,
		// page size, flags (4 bytes each), the root bucket's page ID (8),
		// ...; txid at offset 64. The meta with the higher txid is current.
		ps := int(binary.NativeEndian.Uint32(b[24:]))
		meta := 0
		if binary.NativeEndian.Uint64(b[ps+64:]) > binary.NativeEndian.Uint64(b[64:]) {
			meta = ps
		}
		root := int(binary.NativeEndian.Uint64(b[meta+32:]))
		b[root*ps] ^= 0xff
		ts.Check(os.WriteFile(ts.MkAbs(args[2]), b, 0o600))
	case "cycle":
		b, err := os.ReadFile(ts.MkAbs(args[1]))
		ts.Check(err)
		ps := int(binary.NativeEndian.Uint32(b[24:]))
		meta := 0
		if binary.NativeEndian.Uint64(b[ps+64:]) > binary.NativeEndian.Uint64(b[64:]) {
			meta = ps
		}
		root := binary.NativeEndian.Uint64(b[meta+32:])
		// The root bucket's leaf page: a 16-byte header (count at 10), then
		// elements of flags, pos, ksize, vsize (4 bytes each), pos counting
		// from the element; a bucket's value starts with its root page ID.
		p := b[int(root)*ps:]
		found := false
		for i := range int(binary.NativeEndian.Uint16(p[10:])) {
			e := 16 + i*16
			pos, ks := int(binary.NativeEndian.Uint32(p[e+4:])), int(binary.NativeEndian.Uint32(p[e+8:]))
			if string(p[e+pos:e+pos+ks]) == "units" {
				binary.NativeEndian.PutUint64(p[e+pos+ks:], root)
				found = true
			}
		}
		if !found {
			ts.Fatalf("dbfile cycle: no units bucket in the root page %d", root)
		}
		ts.Check(os.WriteFile(ts.MkAbs(args[2]), b, 0o600))
	default:
		ts.Fatalf("dbfile: unknown %q", args[0])
	}
}
