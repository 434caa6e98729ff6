package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/factory-id/station/internal/hint"
)

func TestPutUnitKeepsIndexes(t *testing.T) {
	db := mustCreateDB(t)
	a, b := testUnit(1), testUnit(2)
	mustPut(t, db, a, b)
	err := db.View(func(tx *bolt.Tx) error {
		for _, u := range []*Unit{a, b} {
			if got := SerialByEK(tx, u.EKSHA256); got != u.Serial {
				t.Errorf("SerialByEK(%s) = %q, want %q", u.EKSHA256[:8], got, u.Serial)
			}
			if got := SerialByCert(tx, u.CertSerial); got != u.Serial {
				t.Errorf("SerialByCert(%s) = %q, want %q", u.CertSerial, got, u.Serial)
			}
		}
		if got := SerialByEK(tx, "00"); got != "" {
			t.Errorf("SerialByEK of an unknown EK = %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A unit without EK or certificate yet (the EK step's first commit)
	// adds no index entry; a certificate re-issued to a unit adds its new
	// serial and keeps the old one pointing at the unit that held it.
	c := &Unit{Serial: "SN-NEW", Status: StatusInProgress}
	mustPut(t, db, c)
	a.CertSerial = "c-reissued"
	mustPut(t, db, a)
	db = mustReopen(t, db, testOptions())
	err = db.View(func(tx *bolt.Tx) error {
		if got := SerialByEK(tx, ""); got != "" {
			t.Errorf("an empty EK hash is indexed (to %q)", got)
		}
		if got := SerialByCert(tx, "c-reissued"); got != a.Serial {
			t.Errorf("new certificate serial -> %q, want %q", got, a.Serial)
		}
		if got := SerialByCert(tx, testUnit(1).CertSerial); got != a.Serial {
			t.Errorf("old certificate serial -> %q, want %q", got, a.Serial)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	units, err := db.Units(nil)
	if err != nil || len(units) != 3 || units[0].Serial != "SN-0001" || units[2].Serial != "SN-NEW" {
		t.Fatalf("Units = %v, %v; want 3 units in serial order", units, err)
	}
	if _, err := db.Unit("SN-9999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unit of an unknown serial: %v, want ErrNotFound", err)
	}
}

// TestErrBusy: a second opener waits at most its timeout for the first
// one's lock, then reports ErrBusy with a hint; read-only openers share.
func TestErrBusy(t *testing.T) {
	db := mustCreateDB(t)
	_, err := Open(db.Path(), testOptions())
	var se *Error
	if !errors.Is(err, ErrBusy) || !errors.As(err, &se) || hint.Of(err) == "" {
		t.Fatalf("second read-write open: %v, want ErrBusy with a hint", err)
	}
	o := testOptions()
	o.ReadOnly = true
	if _, err := Open(db.Path(), o); !errors.Is(err, ErrBusy) {
		t.Fatalf("read-only open while a writer holds it: %v, want ErrBusy", err)
	}
	db.Close()
	r1, err := Open(db.Path(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := Open(db.Path(), o)
	if err != nil {
		t.Fatalf("two read-only opens: %v", err)
	}
	r2.Close()
	if _, err := Open(db.Path(), testOptions()); !errors.Is(err, ErrBusy) {
		t.Fatalf("read-write open while a reader holds it: %v, want ErrBusy", err)
	}
}

// TestReopen: what one open wrote, the next sees; read-only cannot write;
// another station's ID is refused.
func TestReopen(t *testing.T) {
	db := mustCreateDB(t)
	mustPut(t, db, testUnit(7))
	if err := db.Update(func(tx *bolt.Tx) error { return PutMeta(tx, "k", []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.ReadOnly = true
	db = mustReopen(t, db, o)
	u, err := db.Unit("SN-0007")
	if err != nil || u.EKSHA256 != testUnit(7).EKSHA256 || len(u.EKCert) != 1500 {
		t.Fatalf("reopened unit: %+v, %v", u, err)
	}
	db.View(func(tx *bolt.Tx) error {
		if string(GetMeta(tx, "k")) != "v" {
			t.Error("meta value lost on reopen")
		}
		return nil
	})
	if err := db.Update(func(tx *bolt.Tx) error { return nil }); !errors.Is(err, berrors.ErrDatabaseReadOnly) {
		t.Errorf("Update on a read-only open: %v", err)
	}
	db.Close()

	o = testOptions()
	o.StationID = "line2-st01"
	_, err = Open(db.Path(), o)
	if !errors.Is(err, ErrNotStationDB) || !strings.Contains(err.Error(), `station "line1-st03"`) {
		t.Fatalf("open as another station: %v, want ErrNotStationDB naming line1-st03", err)
	}
	o.StationID = ""
	if db, err := Open(db.Path(), o); err != nil {
		t.Fatalf("open for any station: %v", err)
	} else {
		db.Close()
	}
}

// TestCreate: Create never replaces a file, and a failed setup leaves
// neither a database nor a temporary file behind.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "station.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(path, testOptions(), nil); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an empty file: %v, want fs.ErrExist", err)
	}
	if st, _ := os.Stat(path); st.Size() != 0 {
		t.Fatal("Create wrote to the existing file")
	}
	os.Remove(path)
	boom := errors.New("boom")
	if _, err := Create(path, testOptions(), func(*DB) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Create with a failing setup: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("a failed Create left %v", left)
	}
	if _, err := Create(path, Options{}, nil); err == nil {
		t.Fatal("Create without a station ID succeeded")
	}
	db, err := Create(path, testOptions(), func(db *DB) error {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the database is at its path before it is initialized: %v", err)
		}
		mustPut(t, db, testUnit(1))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Unit("SN-0001"); err != nil {
		t.Fatalf("setup's unit: %v", err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", st.Mode().Perm())
	}
}

// TestOpenRefuses attacks Open with every kind of wrong file: each is
// refused with the documented error, without a panic, and left byte for
// byte as it was.
func TestOpenRefuses(t *testing.T) {
	good := filled(t, 40)
	random := make([]byte, len(good))
	rand.Read(random)
	foreign := func() []byte { // another program's bbolt file
		p := filepath.Join(t.TempDir(), "other.db")
		db, err := bolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucket([]byte("config"))
			return b.Put([]byte("k"), []byte("v"))
		})
		db.Close()
		b, _ := os.ReadFile(p)
		return b
	}()
	unfinished := func() []byte { // station buckets, never initialized
		p := filepath.Join(t.TempDir(), "half.db")
		db, err := bolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				tx.CreateBucket(b)
			}
			return nil
		})
		db.Close()
		b, _ := os.ReadFile(p)
		return b
	}()
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNotStationDB},
		{"random", random, ErrNotStationDB},
		{"text", []byte("station:\n  id: line1-st03\n"), ErrNotStationDB},
		{"foreign bbolt", foreign, ErrNotStationDB},
		{"never initialized", unfinished, ErrNotStationDB},
		{"100 bytes", good[:100], ErrDamaged},
		{"4 KiB", good[:4096], ErrDamaged},
		{"8 KiB", good[:8192], ErrDamaged},
		{"half", good[:len(good)/2], ErrDamaged},
		{"one page short", good[:pagesSize(t, good)-4096], ErrDamaged},
		{"both meta pages zeroed", append(make([]byte, 8192), good[8192:]...), ErrNotStationDB},
		{"both meta checksums", flip(flip(good, 16+48), 4096+16+48), ErrDamaged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.data)
			_, err := Open(path, testOptions())
			var se *Error
			if !errors.Is(err, tc.want) || !errors.As(err, &se) || hint.Of(err) == "" || !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v, want %v naming the file, with a hint", err, tc.want)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, tc.data) {
				t.Error("the refused file was changed")
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "station.db")
		if _, err := Open(path, testOptions()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open of a missing file: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Error("Open created the missing file")
		}
	})
	t.Run("folder", func(t *testing.T) {
		if _, err := Open(t.TempDir(), testOptions()); !errors.Is(err, ErrNotStationDB) {
			t.Errorf("Open of a folder: %v", err)
		}
	})
}

// pagesSize is the size the database's pages need (the file may be longer).
func pagesSize(t *testing.T, b []byte) int {
	o := testOptions()
	o.ReadOnly = true
	db, err := Open(writeFile(t, b), o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return int(n)
}

// flip returns a copy of b with the bits of byte i inverted.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0xff
	return c
}

// TestBitFlips flips bytes across every page of a real database (page
// headers, branch and leaf elements, values) and reads everything back:
// each flip either goes unnoticed (bbolt has no page checksums) or is
// reported as a damaged or foreign file, never as a panic or another
// error, and the file is not written to.
func TestBitFlips(t *testing.T) {
	good := filled(t, 12)
	const ps = 4096
	offsets := []int{0, 8, 10, 12, 16, 24, 40, 1000, 4000}
	seen := map[string]int{}
	for page := 2; page < len(good)/ps; page++ {
		for _, o := range offsets {
			for _, mask := range []byte{0x01, 0xff} {
				b := bytes.Clone(good)
				b[page*ps+o] ^= mask
				path := writeFile(t, b)
				err := readAll(path)
				switch {
				case err == nil:
					seen["unnoticed"]++
				case storeErr(err):
					seen[errors.Unwrap(err).Error()]++
				default:
					t.Errorf("page %d offset %d ^%#x: %v (not a store error)", page, o, mask, err)
				}
				if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
					t.Fatalf("page %d offset %d: the file was changed", page, o)
				}
			}
		}
	}
	if seen[ErrDamaged.Error()] == 0 {
		t.Errorf("no flip was reported as damage: %v", seen)
	}
	t.Logf("%v", seen)
}

// TestReplacedUnderneath: an open database whose path is deleted or made to
// name another file refuses to write (ErrReplaced) and writes nothing to
// the file now at the path.
func TestReplacedUnderneath(t *testing.T) {
	for _, how := range []string{"deleted", "renamed away", "replaced"} {
		t.Run(how, func(t *testing.T) {
			db := mustCreateDB(t)
			path := db.Path()
			switch how {
			case "deleted":
				os.Remove(path)
			case "renamed away":
				os.Rename(path, path+".old")
			case "replaced":
				os.WriteFile(path+".new", []byte("x"), 0o600)
				os.Rename(path+".new", path)
			}
			err := db.Update(func(tx *bolt.Tx) error { return PutUnit(tx, testUnit(1)) })
			var se *Error
			if !errors.Is(err, ErrReplaced) || !errors.As(err, &se) || hint.Of(err) == "" {
				t.Fatalf("Update after the file was %s: %v, want ErrReplaced", how, err)
			}
			if how == "replaced" {
				if b, _ := os.ReadFile(path); string(b) != "x" {
					t.Error("the new file at the path was written to")
				}
			}
		})
	}
}

// TestGuard: a bbolt panic is an error; a panic of the caller's own code
// is not mistaken for a damaged file.
func TestGuard(t *testing.T) {
	db := mustCreateDB(t)
	err := db.View(func(tx *bolt.Tx) error {
		tx.Bucket([]byte("no such bucket")).Get([]byte("k")) // bbolt dereferences the nil bucket
		return nil
	})
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("a panic inside bbolt: %v, want ErrDamaged", err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "caller bug") {
			t.Errorf("the caller's panic was swallowed or changed: %v", r)
		}
	}()
	db.View(func(tx *bolt.Tx) error { panic("caller bug") })
}

// TestBackupWhileWriting takes backups while another writer commits every
// millisecond or so (a line commits a few times per unit, each unit taking
// seconds), holding bbolt's lock all along: each backup opens as the
// station's database, passes bbolt's check and holds a state that was
// committed (every unit up to the counter, none after).
func TestBackupWhileWriting(t *testing.T) {
	db := mustCreateDB(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	var commits atomic.Int64
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			err := db.Update(func(tx *bolt.Tx) error {
				if err := PutUnit(tx, testUnit(i)); err != nil {
					return err
				}
				return PutMeta(tx, "count", []byte(fmt.Sprint(i+1)))
			})
			if err != nil {
				t.Error(err)
				return
			}
			commits.Add(1)
			time.Sleep(time.Millisecond) // the writer's pace, not a wait for the other side
		}
	}()
	out := filepath.Join(t.TempDir(), "backups", "station.db")
	var attempts int
	for k := 0; k < 20 || commits.Load() < 100; k++ {
		info, err := Backup(db.Path(), out, testOptions())
		if err != nil {
			stop.Store(true)
			t.Fatalf("backup %d: %v", k, err)
		}
		attempts += info.Attempts
		if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
			t.Fatalf("backup mode %v", st.Mode().Perm())
		}
		o := testOptions()
		o.ReadOnly = true
		b, err := Open(out, o)
		if err != nil {
			stop.Store(true)
			t.Fatalf("backup %d does not open: %v", k, err)
		}
		units, err := b.Units(nil)
		var count string
		b.View(func(tx *bolt.Tx) error { count = string(GetMeta(tx, "count")); return nil })
		if err != nil || fmt.Sprint(len(units)) != count && !(count == "" && len(units) == 0) || info.Units != len(units) {
			t.Errorf("backup %d: %d units (%v), counter %q, info %+v", k, len(units), err, count, info)
		}
		b.Close()
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d commits during the backups; %d copies made", commits.Load(), attempts)
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 1 {
		t.Errorf("backups left temporary files: %v", left)
	}
}

// TestBackupRefuses: a backup of a file that is not this station's
// database, or onto the database itself, fails and writes nothing.
func TestBackupRefuses(t *testing.T) {
	good := filled(t, 5)
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNotStationDB},
		{"half", good[:len(good)/2], ErrDamaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "b.db")
			if _, err := Backup(writeFile(t, tc.data), out, testOptions()); !errors.Is(err, tc.want) {
				t.Errorf("Backup: %v, want %v", err, tc.want)
			}
			if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
				t.Errorf("a refused backup left %v", left)
			}
		})
	}
	o := testOptions()
	o.StationID = "line9"
	path := writeFile(t, good)
	if _, err := Backup(path, filepath.Join(t.TempDir(), "b.db"), o); !errors.Is(err, ErrNotStationDB) {
		t.Errorf("Backup as another station: %v", err)
	}
	if _, err := Backup(path, path, testOptions()); err == nil {
		t.Error("Backup onto the database itself succeeded")
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, good) {
		t.Error("the database was changed")
	}
}

// FuzzOpen opens arbitrary bytes as a station database and reads all of
// it: a store error or success, never a panic or a write to the file.
func FuzzOpen(f *testing.F) {
	good := filled(f, 3)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:4096])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		path := writeFile(t, b)
		err := readAll(path)
		if err != nil && !storeErr(err) {
			t.Fatalf("%v (not a store error)", err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
			t.Fatal("the file was changed")
		}
	})
}
