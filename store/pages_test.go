package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rawDB reads the bbolt layout of a closed database's bytes for the tests
// that corrupt it: the newest meta's root page and high-water mark.
type rawDB struct {
	b   []byte
	ps  int
	hwm uint64
}

func parseRaw(tb testing.TB, b []byte) *rawDB {
	tb.Helper()
	r := &rawDB{b: b, ps: 4096}
	var tx uint64
	for i := range 2 {
		m := b[i*r.ps+pageHeaderSize:]
		if ne.Uint32(m) == boltMagic && (r.hwm == 0 || ne.Uint64(m[48:]) > tx) {
			tx, r.hwm = ne.Uint64(m[48:]), ne.Uint64(m[40:])
			r.ps = int(ne.Uint32(m[8:]))
		}
	}
	return r
}

func (r *rawDB) page(id uint64) []byte { return r.b[int(id)*r.ps : int(id+1)*r.ps] }

// meta returns the newest meta page's fields (after the page header).
func (r *rawDB) meta() []byte {
	m := r.b[pageHeaderSize:]
	if n := r.b[r.ps+pageHeaderSize:]; ne.Uint64(n[48:]) > ne.Uint64(m[48:]) {
		m = n
	}
	return m
}

func (r *rawDB) root() uint64     { return ne.Uint64(r.meta()[16:]) }
func (r *rawDB) freelist() uint64 { return ne.Uint64(r.meta()[32:]) }

// bucketRoot returns the root page of the top-level bucket name (which must
// not be inline).
func (r *rawDB) bucketRoot(tb testing.TB, name string) uint64 {
	tb.Helper()
	p := r.page(r.root())
	for i := range int(ne.Uint16(p[10:])) {
		e := pageHeaderSize + i*pageElementSize
		pos, ks := int(ne.Uint32(p[e+4:])), int(ne.Uint32(p[e+8:]))
		if string(p[e+pos:e+pos+ks]) == name {
			root := ne.Uint64(p[e+pos+ks:])
			if root == 0 {
				tb.Fatalf("bucket %q is inline", name)
			}
			return root
		}
	}
	tb.Fatalf("no bucket %q in the root page %d (a branch?)", name, r.root())
	return 0
}

// unitsBranch returns a database of n units whose units bucket's root is
// a branch page, with that page's id.
func unitsBranch(tb testing.TB) (*rawDB, uint64) {
	tb.Helper()
	r := parseRaw(tb, filled(tb, 60))
	id := r.bucketRoot(tb, string(bucketUnits))
	if f := ne.Uint16(r.page(id)[8:]); f != branchPage {
		tb.Fatalf("the units bucket's root page %d has flags %#x, want a branch", id, f)
	}
	return r, id
}

// openBounded opens path as a command would and reads every unit, failing
// the test if that does not return within a generous bound (a cycle in the
// page tree made bbolt's cursor loop forever).
func openBounded(t *testing.T, path string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- readAll(path) }()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("opening the corrupt database hangs")
		return nil
	}
}

// TestPageWalkRefuses corrupts the page tree of a real database in ways
// bbolt does not check (a cycle, on which its cursor loops forever; a page
// past the high-water mark; a leaf claiming more elements than it holds):
// Open and Backup refuse each with ErrDamaged naming the page, promptly,
// and the file is left byte for byte.
func TestPageWalkRefuses(t *testing.T) {
	cases := []struct {
		name, want string
		corrupt    func(t *testing.T, r *rawDB, branch uint64)
	}{
		{"cycle to the branch itself", "reached twice", func(_ *testing.T, r *rawDB, branch uint64) {
			p := r.page(branch)
			e := pageHeaderSize + (int(ne.Uint16(p[10:]))-1)*pageElementSize
			ne.PutUint64(p[e+8:], branch)
		}},
		{"cycle to the root bucket", "reached twice", func(_ *testing.T, r *rawDB, branch uint64) {
			ne.PutUint64(r.page(branch)[pageHeaderSize+8:], r.root())
		}},
		{"page past the high-water mark", "outside the file", func(_ *testing.T, r *rawDB, branch uint64) {
			ne.PutUint64(r.page(branch)[pageHeaderSize+8:], r.hwm+3)
		}},
		{"leaf claims too many elements", "more than its", func(_ *testing.T, r *rawDB, branch uint64) {
			leaf := ne.Uint64(r.page(branch)[pageHeaderSize+8:])
			ne.PutUint16(r.page(leaf)[10:], 0xFFF0)
		}},
		{"freelist claims too many entries", "more than its page holds", func(_ *testing.T, r *rawDB, _ uint64) {
			p := r.page(r.freelist())
			ne.PutUint16(p[10:], 0xFFFF)
			ne.PutUint64(p[pageHeaderSize:], 1<<40)
		}},
		{"freelist lists a page in use", "both in use and listed as free", func(t *testing.T, r *rawDB, branch uint64) {
			p := r.page(r.freelist())
			if ne.Uint16(p[10:]) == 0 || ne.Uint16(p[10:]) == 0xFFFF {
				t.Fatalf("freelist page %d lists %#x pages", r.freelist(), ne.Uint16(p[10:]))
			}
			ne.PutUint64(p[pageHeaderSize:], branch)
		}},
		{"leaf element past its page", "past the page", func(_ *testing.T, r *rawDB, branch uint64) {
			leaf := ne.Uint64(r.page(branch)[pageHeaderSize+8:])
			ne.PutUint32(r.page(leaf)[pageHeaderSize+4:], 1<<20)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, branch := unitsBranch(t)
			tc.corrupt(t, r, branch)
			path := writeFile(t, r.b)
			err := openBounded(t, path)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "page ") {
				t.Errorf("Open: %v, want ErrDamaged with %q naming the page", err, tc.want)
			}
			out := filepath.Join(t.TempDir(), "b.db")
			if _, err := Backup(path, out, testOptions()); !errors.Is(err, ErrDamaged) {
				t.Errorf("Backup: %v, want ErrDamaged", err)
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused backup left %s: %v", out, err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, r.b) {
				t.Error("the refused file was changed")
			}
		})
	}
}

// TestPageWalkHealthy: a large database with nested buckets (on pages of
// their own and inline) and a value spanning overflow pages passes the walk,
// and a backup of it too.
func TestPageWalkHealthy(t *testing.T) {
	db := mustCreateDB(t)
	for i := 0; i < 500; i += 50 {
		us := make([]*Unit, 50)
		for j := range us {
			us[j] = testUnit(i + j)
		}
		mustPut(t, db, us...)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		big, err := top.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		deep, err := big.CreateBucket([]byte("deep"))
		if err != nil {
			return err
		}
		if err := deep.Put([]byte("large"), bytes.Repeat([]byte{7}, 50000)); err != nil {
			return err
		}
		for i := range 300 {
			if err := big.Put([]byte{byte(i >> 8), byte(i)}, make([]byte, 100)); err != nil {
				return err
			}
		}
		small, err := top.CreateBucket([]byte("small")) // inline in its parent's page
		if err != nil {
			return err
		}
		return small.Put([]byte("k"), []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, err := os.ReadFile(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := openBounded(t, db.Path()); err != nil {
		t.Fatalf("a healthy database: %v", err)
	}
	if _, err := Backup(db.Path(), filepath.Join(t.TempDir(), "b.db"), testOptions()); err != nil {
		t.Fatalf("Backup of a healthy database: %v", err)
	}
	if after, _ := os.ReadFile(db.Path()); !bytes.Equal(before, after) {
		t.Error("the read-only walk changed the file")
	}
}

// BenchmarkCheckPages measures the page walk every command's Open runs, on
// a database of 10,000 units, beside the whole read-only Open.
func BenchmarkCheckPages(b *testing.B) {
	db := mustCreateDB(b)
	for i := 0; i < 10000; i += 500 {
		us := make([]*Unit, 500)
		for j := range us {
			us[j] = testUnit(i + j)
		}
		mustPut(b, db, us...)
	}
	st, err := os.Stat(db.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("walk", func(b *testing.B) {
		for range b.N {
			if err := db.checkPages(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(st.Size())/(1<<20), "MiB")
	})
	path := db.Path()
	db.Close()
	o := testOptions()
	o.ReadOnly = true
	b.Run("open", func(b *testing.B) {
		for range b.N {
			db, err := Open(path, o)
			if err != nil {
				b.Fatal(err)
			}
			db.Close()
		}
	})
}
