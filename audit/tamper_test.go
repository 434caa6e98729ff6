package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/factory-id/station/internal/dirtest"
)

// tamperFixture is an export of 301 records (43 units) with a checkpoint kept every 16 records or so.
type tamperFixture struct {
	l     *Log
	db    *bolt.DB
	files map[string][]byte
	lines [][]byte // records.jsonl lines without newlines
	cps   []cpLine
}

type cpLine struct {
	Size uint64 `json:"size"`
	Note string `json:"note"`
}

func newTamperFixture(t *testing.T) *tamperFixture {
	t.Helper()
	l, db := newTestLog(t, testKey(1))
	l.window = 16
	addUnits(t, l, db, 0, 43)
	dir := filepath.Join(t.TempDir(), "export")
	if _, err := l.Export(dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	f := &tamperFixture{l: l, db: db, files: dirtest.Read(t, dir)}
	f.lines = bytes.Split(bytes.TrimSuffix(f.files[FileRecordsJSONL], []byte("\n")), []byte("\n"))
	for _, line := range bytes.Split(bytes.TrimSuffix(f.files[FileCheckpoints], []byte("\n")), []byte("\n")) {
		var c cpLine
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatal(err)
		}
		f.cps = append(f.cps, c)
	}
	if len(f.lines) != 301 || len(f.cps) < 10 {
		t.Fatalf("fixture: %d records, %d checkpoints", len(f.lines), len(f.cps))
	}
	return f
}

// verify writes the export with records and checkpoints replaced and
// verifies it with the station's key.
func (f *tamperFixture) verify(t *testing.T, lines [][]byte, cps []cpLine, anchor []byte) (*Report, error) {
	t.Helper()
	files := map[string][]byte{}
	for k, v := range f.files {
		files[k] = v
	}
	var rec bytes.Buffer
	for _, l := range lines {
		rec.Write(l)
		rec.WriteByte('\n')
	}
	files[FileRecordsJSONL] = rec.Bytes()
	var cb bytes.Buffer
	for _, c := range cps {
		b, _ := json.Marshal(c)
		cb.Write(b)
		cb.WriteByte('\n')
	}
	files[FileCheckpoints] = cb.Bytes()
	if len(cps) > 0 {
		files[FileCheckpoint] = []byte(cps[len(cps)-1].Note)
	}
	fsys := fstest.MapFS{}
	for k, v := range files {
		fsys[k] = &fstest.MapFile{Data: v}
	}
	return VerifyExportFS(fsys, f.l.Public(), anchor)
}

func cloneLines(lines [][]byte) [][]byte {
	out := make([][]byte, len(lines))
	for i, l := range lines {
		out[i] = bytes.Clone(l)
	}
	return out
}

func TestTamperExportFlipEveryRecord(t *testing.T) {
	f := newTamperFixture(t)
	if _, err := f.verify(t, f.lines, f.cps, nil); err != nil {
		t.Fatalf("untouched export: %v", err)
	}
	n := len(f.lines)
	every := map[int]bool{1: true, n - 1: true, n: true} // every byte; the others two bytes each
	for i := 1; i <= n; i++ {
		line := f.lines[i-1]
		positions := []int{(i * 7919) % len(line), len(line) - 10 - i%50} // anywhere; in the prev hash
		if every[i] {
			positions = positions[:0]
			for p := range line {
				positions = append(positions, p)
			}
		}
		for _, pos := range positions {
			lines := cloneLines(f.lines)
			lines[i-1][pos] ^= 0x01
			_, err := f.verify(t, lines, f.cps, nil)
			if t.Failed() {
				return
			}
			func() {
				defer func() {
					if t.Failed() {
						t.Logf("record %d byte %d (%q -> %q)", i, pos, line[pos], lines[i-1][pos])
					}
				}()
				wantSeq(t, err, uint64(i))
			}()
		}
	}
}

func TestTamperExport(t *testing.T) {
	f := newTamperFixture(t)
	n := uint64(len(f.lines))
	other := testKey(2)
	otherNote := func(c cpLine) string {
		cp, err := OpenCheckpoint([]byte(c.Note), f.l.Public())
		if err != nil {
			t.Fatal(err)
		}
		ns, _ := newNoteSigner(cp.Origin, other)
		msg, err := signCheckpoint(cp, ns)
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	// forged is a record that chains correctly after record seq-1.
	forged := func(seq uint64) []byte {
		r, err := Parse(f.lines[seq-1])
		if err != nil {
			t.Fatal(err)
		}
		r.Event = "provision.forged"
		b, _ := r.Bytes()
		return b
	}
	lastCP := f.cps[len(f.cps)-1]
	cpBefore := func(size uint64) int { // index of the last checkpoint below size
		i := 0
		for i+1 < len(f.cps) && f.cps[i+1].Size < size {
			i++
		}
		return i
	}

	for _, tc := range []struct {
		name   string
		edit   func(lines [][]byte, cps []cpLine) ([][]byte, []cpLine)
		anchor []byte
		seq    uint64
	}{
		{"delete first", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) { return l[1:], c }, nil, 1},
		{"delete 17", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) { return append(l[:16], l[17:]...), c }, nil, 17},
		{"delete last", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) { return l[:n-1], c }, nil, n},
		{"insert forged at 40", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			return append(l[:39:39], append([][]byte{forged(40)}, l[39:]...)...), c
		}, nil, 40},
		{"insert duplicate of 100", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			return append(l[:100:100], append([][]byte{l[99]}, l[100:]...)...), c
		}, nil, 100},
		{"append forged after the last checkpoint", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			r, _ := Parse(l[n-1])
			r.Seq++
			h := Hash(l[n-1])
			r.Prev = h[:]
			b, _ := r.Bytes()
			return append(l, b), c
		}, nil, n + 1},
		{"replace 50 and rechain (no key)", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			l[49] = forged(50)
			for i := 50; i < len(l); i++ {
				r, _ := Parse(l[i])
				h := Hash(l[i-1])
				r.Prev = h[:]
				l[i], _ = r.Bytes()
			}
			return l, c
		}, nil, f.cps[cpBefore(50)+1].Size}, // caught by the first signature after it
		{"swap 60 and 61", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) { l[59], l[60] = l[60], l[59]; return l, c }, nil, 60},
		{"move 10 to the end", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			return append(append(l[:9:9], l[10:]...), l[9]), c
		}, nil, 10},
		{"truncate below the last checkpoint", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) { return l[:n-5], c }, nil, n - 4},
		{"truncate to an earlier checkpoint (no anchor: undetectable)", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			k := cpBefore(200)
			return l[:c[k].Size], c[:k+1]
		}, nil, 0},
		{"truncate to an earlier checkpoint, anchored", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			k := cpBefore(200)
			return l[:c[k].Size], c[:k+1]
		}, []byte(lastCP.Note), f.cps[cpBefore(200)].Size + 1},
		{"replace a checkpoint (other key)", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			c[3].Note = otherNote(c[3])
			return l, c
		}, nil, f.cps[3].Size},
		{"replace a checkpoint (another size's note)", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			c[3].Note = c[2].Note
			return l, c
		}, nil, f.cps[3].Size},
		{"flip a byte in a checkpoint", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			b := []byte(c[5].Note)
			b[len(b)-5] ^= 1
			c[5].Note = string(b)
			return l, c
		}, nil, f.cps[5].Size},
		{"checkpoints reordered", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) {
			c[4], c[5] = c[5], c[4]
			return l, c
		}, nil, f.cps[4].Size},
		{"anchor from another log", func(l [][]byte, c []cpLine) ([][]byte, []cpLine) { return l, c }, func() []byte {
			cp, _ := OpenCheckpoint([]byte(f.cps[2].Note), f.l.Public())
			cp.Root[0] ^= 1
			ns, _ := newNoteSigner(cp.Origin, f.l.signer.s)
			msg, _ := signCheckpoint(cp, ns)
			return msg
		}(), f.cps[2].Size},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, cps := tc.edit(cloneLines(f.lines), append([]cpLine(nil), f.cps...))
			rep, err := f.verify(t, lines, cps, tc.anchor)
			if tc.seq == 0 {
				if err != nil {
					t.Fatalf("want undetected (documented limit), got %v", err)
				}
				t.Logf("undetected without an anchor: %d records", rep.Records)
				return
			}
			wantSeq(t, err, tc.seq)
			t.Log(err)
		})
	}
}

func TestWrongKeyAndShippedKey(t *testing.T) {
	f := newTamperFixture(t)
	dir := writeFiles(t, f.files)
	_, err := VerifyExport(dir, testKey(2).Public(), nil)
	wantSeq(t, err, f.cps[0].Size)
	if !strings.Contains(err.Error(), "not signed by the given key") {
		t.Fatalf("wrong key: %v", err)
	}

	// An attacker rewrites record 5, re-signs everything with their own key
	// and ships that key in the export: the auditor's key rejects it.
	evil := testKey(3)
	l2, db2 := newTestLog(t, evil)
	l2.window = 16
	addUnits(t, l2, db2, 0, 43)
	forgedDir := filepath.Join(t.TempDir(), "forged")
	if _, err := l2.Export(forgedDir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyExport(forgedDir, evil.Public(), nil); err != nil {
		t.Fatalf("forged export does verify under the forger's key: %v", err)
	}
	_, err = VerifyExport(forgedDir, f.l.Public(), nil)
	wantSeq(t, err, f.cps[0].Size)

	// The genuine export with a foreign key file still verifies (the key
	// shipped is ignored) but says so.
	files := map[string][]byte{}
	for k, v := range f.files {
		files[k] = v
	}
	files[FilePublicKey], _ = MarshalPublicKeyPEM(evil.Public())
	rep, err := VerifyExport(writeFiles(t, files), f.l.Public(), nil)
	if err != nil || len(rep.Warnings) != 1 {
		t.Fatalf("genuine export with a foreign key file: %v %v", err, rep)
	}
}

func TestTamperDB(t *testing.T) {
	edit := func(t *testing.T, fn func(tx *bolt.Tx) error) (*Log, *bolt.DB) {
		l, db := newTestLog(t, testKey(1))
		l.window = 16
		addUnits(t, l, db, 0, 40) // 280 records
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		return l, db
	}
	t.Run("flip a byte in each record", func(t *testing.T) {
		l, db := newTestLog(t, testKey(1))
		addUnits(t, l, db, 0, 40)
		for i := uint64(1); i <= 280; i++ {
			var orig []byte
			db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketRecords)
				orig = bytes.Clone(b.Get(u64(i)))
				mod := bytes.Clone(orig)
				mod[int(i*31)%len(mod)] ^= 0x20
				return b.Put(u64(i), mod)
			})
			_, err := Verify(db, l.Public(), nil)
			wantSeq(t, err, i)
			db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRecords).Put(u64(i), orig) })
		}
		mustVerify(t, db, l.Public(), nil)
	})
	for _, tc := range []struct {
		name string
		fn   func(tx *bolt.Tx) error
		seq  uint64
	}{
		{"delete record 33", func(tx *bolt.Tx) error { return tx.Bucket(bucketRecords).Delete(u64(33)) }, 33},
		{"move record 12 to key 13", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			return b.Put(u64(13), bytes.Clone(b.Get(u64(12))))
		}, 13},
		{"flip a tree hash", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketTree)
			h := bytes.Clone(b.Get(u64(100)))
			h[0] ^= 1
			return b.Put(u64(100), h)
		}, 52}, // stored hash 100 is written with record 52
		{"truncate records below the last checkpoint", func(tx *bolt.Tx) error {
			for s := uint64(276); s <= 280; s++ {
				tx.Bucket(bucketRecords).Delete(u64(s))
			}
			return nil
		}, 276},
		{"truncate records and tree below the last checkpoint", func(tx *bolt.Tx) error {
			for s := uint64(276); s <= 280; s++ {
				tx.Bucket(bucketRecords).Delete(u64(s))
			}
			tb := tx.Bucket(bucketTree)
			c := tb.Cursor()
			for k, _ := c.Seek(u64(uint64(storedCount(275)))); k != nil; k, _ = c.Next() {
				c.Delete()
			}
			return nil
		}, 276},
		{"replace a checkpoint with another key's", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketCheckpoints)
			k, v := b.Cursor().First()
			cp, _ := OpenCheckpoint(v, testKey(1).Public())
			ns, _ := newNoteSigner(cp.Origin, testKey(2))
			msg, _ := signCheckpoint(cp, ns)
			return b.Put(k, msg)
		}, 15}, // the last checkpoint of the first 16-record window
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, db := edit(t, tc.fn)
			_, err := Verify(db, l.Public(), nil)
			wantSeq(t, err, tc.seq)
			t.Log(err)
		})
	}
	t.Run("anchor catches truncation to an earlier checkpoint", func(t *testing.T) {
		l, db := newTestLog(t, testKey(1))
		l.window = 16
		addUnits(t, l, db, 0, 40)
		var anchor []byte
		db.View(func(tx *bolt.Tx) error {
			_, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
			anchor = bytes.Clone(v)
			return nil
		})
		if rep := mustVerify(t, db, l.Public(), anchor); len(rep.Consistency) != 0 || rep.Anchor.Size != 280 {
			t.Fatalf("anchor at the head: %+v", rep)
		}
		// an anchor at an earlier size is proven by a consistency proof too
		var early []byte
		db.View(func(tx *bolt.Tx) error {
			_, v := tx.Bucket(bucketCheckpoints).Cursor().First()
			early = bytes.Clone(v)
			return nil
		})
		if rep := mustVerify(t, db, l.Public(), early); len(rep.Consistency) == 0 {
			t.Fatalf("no consistency proof: %+v", rep)
		}
		// Records past 127 (the last signed size kept in its window) go,
		// with their tree hashes and checkpoints: a rollback.
		db.Update(func(tx *bolt.Tx) error {
			for s := uint64(128); s <= 280; s++ {
				tx.Bucket(bucketRecords).Delete(u64(s))
			}
			c := tx.Bucket(bucketTree).Cursor()
			for k, _ := c.Seek(u64(uint64(storedCount(127)))); k != nil; k, _ = c.Next() {
				c.Delete()
			}
			c = tx.Bucket(bucketCheckpoints).Cursor()
			for k, _ := c.Seek(u64(128)); k != nil; k, _ = c.Next() {
				c.Delete()
			}
			return nil
		})
		mustVerify(t, db, l.Public(), nil) // undetectable without an anchor
		_, err := Verify(db, l.Public(), anchor)
		wantSeq(t, err, 128)
		t.Log(err)
	})
	t.Run("records no checkpoint covers are an integrity violation", func(t *testing.T) {
		l, db := newTestLog(t, testKey(1))
		l.window = 16
		addUnits(t, l, db, 0, 2) // 14 records, one checkpoint (14)
		if rep := mustVerify(t, db, l.Public(), nil); rep.Unsigned != 0 || rep.Latest.Size != 14 {
			t.Fatalf("report %+v", rep)
		}
		db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCheckpoints).Delete(u64(14)) })
		_, err := Verify(db, l.Public(), nil)
		wantSeq(t, err, 1)
		if !strings.Contains(err.Error(), "covered by no signed checkpoint") {
			t.Fatal(err)
		}
	})
}

func storedCount(n int64) int64 { return tlog.StoredHashCount(n) }

func TestVerifyErrorText(t *testing.T) {
	e := verr(17, "something")
	if fmt.Sprint(e) != "record 17: something" {
		t.Fatal(e)
	}
}
