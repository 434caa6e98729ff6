package enroll

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/dirtest"
	"github.com/factory-id/station/internal/storetest"
	"github.com/factory-id/station/store"
)

func readBulk(t *testing.T, dir, name string) BulkOperation {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	var op BulkOperation
	if err := json.Unmarshal(b, &op); err != nil {
		t.Fatal(err)
	}
	return op
}

func TestBulkChunking(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 11, 20, 21} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			db := openDB(t)
			storetest.PutUnits(t, db, tpmUnits(n, "SN")...)
			out := filepath.Join(t.TempDir(), "export")
			res := runExport(t, db, baseOpts(t, FormatBulk, out))
			wantFiles := (n + 9) / 10
			if len(res.Manifest.Files) != wantFiles {
				t.Fatalf("%d files, want %d", len(res.Manifest.Files), wantFiles)
			}
			var serials []string
			for i, f := range res.Manifest.Files {
				if want := fmt.Sprintf("%04d.json", i+1); f.Name != want {
					t.Fatalf("file %d named %s, want %s", i, f.Name, want)
				}
				op := readBulk(t, out, f.Name)
				wantN := min(10, n-10*i)
				if op.Mode != ModeCreate || len(op.Enrollments) != wantN || f.Enrollments != wantN {
					t.Fatalf("%s: mode %s, %d enrollments, want create with %d", f.Name, op.Mode, len(op.Enrollments), wantN)
				}
				for _, e := range op.Enrollments {
					serials = append(serials, e.InitialTwin.Tags[TagSerial])
				}
			}
			if len(serials) != n || !slices.IsSorted(serials) {
				t.Fatalf("serials %v", serials)
			}
			c := res.Manifest.Counts
			if c.Units != n || c.Enrolled != n || c.Create != n || c.Enabled != n {
				t.Fatalf("counts %+v", c)
			}
			if _, err := VerifyExport(out, testSigner(t, 1).Public()); err != nil {
				t.Fatal(err)
			}
			got := dirtest.Read(t, out)
			if len(got) != wantFiles+2 {
				t.Fatalf("files %v", names(got))
			}
		})
	}
}

func TestExportDeterministic(t *testing.T) {
	for _, format := range []string{FormatBulk, FormatIndividual} {
		t.Run(format, func(t *testing.T) {
			db := openDB(t)
			storetest.PutUnits(t, db, tpmUnits(23, "SN")...)
			dir := t.TempDir()
			a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
			runExport(t, db, baseOpts(t, format, a))
			runExport(t, db, baseOpts(t, format, b))
			runExport(t, db, baseOpts(t, format, a)) // replaces the earlier export in place
			da, dbb := dirtest.Read(t, a), dirtest.Read(t, b)
			if !slices.Equal(names(da), names(dbb)) {
				t.Fatalf("file sets differ: %v / %v", names(da), names(dbb))
			}
			for k := range da {
				if !bytes.Equal(da[k], dbb[k]) {
					t.Fatalf("%s differs between two exports of the same input", k)
				}
			}
			var m Manifest
			json.Unmarshal(da[ManifestFile], &m)
			if m.AsOf != "2026-03-01T08:22:30Z" {
				t.Fatalf("as_of %q: want the newest record's time", m.AsOf)
			}
			if format == FormatIndividual {
				u := tpmUnit("SN00000", "SN00000", 0)
				if _, ok := da[u.RegistrationID+".json"]; !ok {
					t.Fatalf("no %s.json in %v", u.RegistrationID, names(da))
				}
			}
		})
	}
}

func revoke(t *testing.T, db *store.DB, serial string) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		_, _, err := RevokeUnit(tx, serial, NewRevocation("stolen", "alice", t0.Add(48*time.Hour)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The revocation flow: export, revoke, export the delta: the revoked unit
// comes out as update/disabled, a new unit as create, nothing else.
func TestOnlyNewAndRevocation(t *testing.T) {
	db := openDB(t)
	us := tpmUnits(12, "SN")
	storetest.PutUnits(t, db, us[:11]...)
	dir := t.TempDir()
	o := baseOpts(t, FormatBulk, filepath.Join(dir, "full"))
	runExport(t, db, o)

	revoke(t, db, "SN00003")
	storetest.PutUnits(t, db, us[11])
	o.OnlyNew, o.Out = true, filepath.Join(dir, "delta1")
	res := runExport(t, db, o)
	c := res.Manifest.Counts
	if c.Enrolled != 2 || c.Create != 1 || c.Update != 1 || c.Disabled != 1 || c.Unchanged != 10 {
		t.Fatalf("delta counts %+v", c)
	}
	create, update := readBulk(t, o.Out, "0001.json"), readBulk(t, o.Out, "0002.json")
	if create.Mode != ModeCreate || create.Enrollments[0].InitialTwin.Tags[TagSerial] != "SN00011" {
		t.Fatalf("create op %+v", create)
	}
	if update.Mode != ModeUpdate || update.Enrollments[0].InitialTwin.Tags[TagSerial] != "SN00003" ||
		update.Enrollments[0].ProvisioningStatus != StatusDisabled {
		t.Fatalf("update op %+v", update)
	}
	if res.Manifest.AsOf != "2026-03-03T08:00:00Z" {
		t.Fatalf("as_of %s: want the revocation time", res.Manifest.AsOf)
	}

	o.Out = filepath.Join(dir, "delta2")
	res = runExport(t, db, o)
	if res.Manifest.Counts.Enrolled != 0 || len(res.Manifest.Files) != 0 {
		t.Fatalf("second delta not empty: %+v", res.Manifest)
	}
	if _, err := VerifyExport(o.Out, o.Signer.Public()); err != nil {
		t.Fatal(err)
	}

	// A full re-export: all units, the revoked one still update/disabled.
	o.OnlyNew, o.Out = false, filepath.Join(dir, "full2")
	res = runExport(t, db, o)
	c = res.Manifest.Counts
	if c.Enrolled != 12 || c.Create != 11 || c.Update != 1 {
		t.Fatalf("full counts %+v", c)
	}
	last := readBulk(t, o.Out, res.Manifest.Files[len(res.Manifest.Files)-1].Name)
	if last.Mode != ModeUpdate {
		t.Fatalf("updates must come last: %+v", res.Manifest.Files)
	}
	// Revoking again keeps the first revocation.
	err := db.Update(func(tx *bolt.Tx) error {
		u, changed, err := RevokeUnit(tx, "SN00003", NewRevocation("again", "bob", time.Now()))
		if err == nil && (changed || u.Revocation.Reason != "stolen") {
			t.Errorf("second revocation changed the record: %+v", u.Revocation)
		}
		_, _, err2 := RevokeUnit(tx, "NOPE", NewRevocation("x", "", time.Now()))
		if !errors.Is(err2, store.ErrNotFound) {
			t.Errorf("unknown serial: %v", err2)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A revoked unit never exported is written create/disabled (it blocks a
// clone), and the filters select what they say.
func TestFilters(t *testing.T) {
	db := openDB(t)
	us := tpmUnits(10, "SN")
	us[9].Status = store.StatusInProgress
	storetest.PutUnits(t, db, us...)
	revoke(t, db, "SN00002")
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"all", Filter{}, []string{"SN00000", "SN00001", "SN00002", "SN00003", "SN00004", "SN00005", "SN00006", "SN00007", "SN00008"}},
		{"revoked", Filter{Status: store.StatusRevoked}, []string{"SN00002"}},
		{"serials", Filter{Serials: []string{"SN00004", "SN00001", "SN00009"}}, []string{"SN00001", "SN00004"}},
		{"window", Filter{Since: t0.Add(3 * time.Minute), Until: t0.Add(5*time.Minute + 30*time.Second)}, []string{"SN00003", "SN00004"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOpts(t, FormatBulk, filepath.Join(t.TempDir(), "x"))
			o.Filter = tc.f
			var got []string
			db.Update(func(tx *bolt.Tx) error {
				res, err := Export(tx, o)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Discard()
				if err := res.Install(); err != nil {
					t.Fatal(err)
				}
				for _, f := range res.Manifest.Files {
					for _, e := range readBulk(t, o.Out, f.Name).Enrollments {
						got = append(got, e.InitialTwin.Tags[TagSerial])
						if e.InitialTwin.Tags[TagSerial] == "SN00002" && (e.ProvisioningStatus != StatusDisabled || f.Mode != ModeCreate) {
							t.Errorf("never-exported revoked unit: %s %s", f.Mode, e.ProvisioningStatus)
						}
					}
				}
				return errors.New("rollback") // keep the bookkeeping out of the next case
			})
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestExportOptionErrors(t *testing.T) {
	db := openDB(t)
	dir := t.TempDir()
	notExport := filepath.Join(dir, "busy")
	os.MkdirAll(notExport, 0o755)
	os.WriteFile(filepath.Join(notExport, "precious.txt"), []byte("x"), 0o644)
	tests := []struct {
		name string
		mod  func(*Options)
		want error
	}{
		{"format", func(o *Options) { o.Format = "xml" }, ErrOptions},
		{"no-signer", func(o *Options) { o.Signer = nil }, ErrOptions},
		{"secrets-no-key", func(o *Options) { o.Profile.GroupKey = []byte("k") }, ErrOptions},
		{"secrets-csv", func(o *Options) { o.Format, o.Profile.GroupKey = FormatCSV, []byte("k") }, ErrOptions},
		{"status", func(o *Options) { o.Filter.Status = "in-progress" }, ErrOptions},
		{"group-no-ca", func(o *Options) { o.Format = FormatGroup }, ErrOptions},
		{"foreign-folder", func(o *Options) { o.Out = notExport }, ErrOutput},
		{"allocation-policy", func(o *Options) { o.Profile.AllocationPolicy = "Hashed" }, ErrOptions},
		{"static-two-hubs", func(o *Options) { o.Profile.AllocationPolicy, o.Profile.IoTHubs = "static", []string{"a", "b"} }, ErrOptions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOpts(t, FormatBulk, filepath.Join(dir, tc.name))
			tc.mod(&o)
			err := db.Update(func(tx *bolt.Tx) error { _, err := Export(tx, o); return err })
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(notExport, "precious.txt")); err != nil {
		t.Fatal("a foreign folder was touched")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

func TestSymmetricKeyExports(t *testing.T) {
	db := openDB(t)
	var us []*store.Unit
	for i := range 3 {
		us = append(us, &store.Unit{Serial: fmt.Sprintf("SK%d", i), Status: store.StatusProvisioned, Attestation: AttestSymmetricKey,
			RegistrationID: fmt.Sprintf("sk%d", i), ProvisionedAt: t0})
	}
	storetest.PutUnits(t, db, us...)
	revoke(t, db, "SK1")
	dir := t.TempDir()

	// Without secrets: the enabled units register via the group and are
	// listed; the revoked one gets a disabled enrollment with no key.
	o := baseOpts(t, FormatBulk, filepath.Join(dir, "plain"))
	res := runExport(t, db, o)
	files := dirtest.Read(t, o.Out)
	if string(files[RegistrationIDsFile]) != "sk0\nsk2\n" || res.Manifest.Counts.ViaGroup != 2 || res.Manifest.Counts.Enrolled != 1 {
		t.Fatalf("plain export: %q %+v", files[RegistrationIDsFile], res.Manifest.Counts)
	}
	op := readBulk(t, o.Out, "0001.json")
	if e := op.Enrollments[0]; e.RegistrationID != "sk1" || e.ProvisioningStatus != StatusDisabled || e.Attestation.SymmetricKey.PrimaryKey != "" {
		t.Fatalf("revoked symmetric enrollment %+v", e)
	}
	if _, err := VerifyExport(o.Out, o.Signer.Public()); err != nil {
		t.Fatal(err)
	}

	// With secrets: encrypted, 0600, decryptable, holding the derived keys.
	rcpt, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	group := []byte("0123456789abcdef0123456789abcdef")
	o = baseOpts(t, FormatIndividual, filepath.Join(dir, "secret"))
	o.Profile.GroupKey, o.EncryptTo = group, rcpt.Public()
	runExport(t, db, o)
	files = dirtest.Read(t, o.Out)
	if _, err := VerifyExport(o.Out, o.Signer.Public()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"sk0", "sk2"} {
		jwe, ok := files[id+".json.jwe"]
		if !ok {
			t.Fatalf("no %s.json.jwe in %v", id, names(files))
		}
		st, _ := os.Stat(filepath.Join(o.Out, id+".json.jwe"))
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v", id, st.Mode())
		}
		if bytes.Contains(jwe, []byte(base64.StdEncoding.EncodeToString(mustDeviceKey(t, group, id)))) {
			t.Fatal("derived key in the clear")
		}
		plain, err := Decrypt(rcpt, jwe)
		if err != nil {
			t.Fatal(err)
		}
		var e IndividualEnrollment
		json.Unmarshal(plain, &e)
		if e.Attestation.SymmetricKey.PrimaryKey != base64.StdEncoding.EncodeToString(mustDeviceKey(t, group, id)) {
			t.Fatalf("%s: wrong key", id)
		}
	}
	if st, _ := os.Stat(o.Out); st.Mode().Perm() != 0o700 {
		t.Fatalf("secret folder mode %v", st.Mode())
	}
	wrong, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := Decrypt(wrong, files["sk0.json.jwe"]); err == nil {
		t.Fatal("decrypted with the wrong key")
	}
}

func TestGroupExport(t *testing.T) {
	db := openDB(t)
	root := newCA(t, "root", nil)
	line, old := newCA(t, "line", root), newCA(t, "old-line", root)
	a := tpmUnit("SNA", "a", 0)
	a.Chain = [][]byte{old.cert.Raw}
	b := tpmUnit("SNB", "b", 1)
	b.Cert = old.leaf(t, b.RegistrationID) // no chain recorded: found by signature
	c := tpmUnit("SNC", "c", 2)
	c.Cert, c.Chain = line.leaf(t, c.RegistrationID), [][]byte{line.cert.Raw}
	storetest.PutUnits(t, db, a, b, c)

	o := baseOpts(t, FormatGroup, filepath.Join(t.TempDir(), "groups"))
	o.LineCA = line.cert.Raw
	runExport(t, db, o)

	var rev *CARevocation
	err := db.Update(func(tx *bolt.Tx) error {
		var err error
		rev, err = RevokeCA(tx, old.cert, NewRevocation("key leaked", "alice", t0.Add(time.Hour)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rev.Units, []string{"SNA", "SNB"}) || !slices.Equal(rev.Newly, rev.Units) {
		t.Fatalf("units under the revoked CA: %+v", rev)
	}
	// Again, with a unit issued under the CA since: it is caught, the CA's
	// first revocation stands.
	d := tpmUnit("SND", "d", 3)
	d.Chain = [][]byte{old.cert.Raw}
	storetest.PutUnits(t, db, d)
	err = db.Update(func(tx *bolt.Tx) error {
		again, err := RevokeCA(tx, old.cert, NewRevocation("again", "bob", t0.Add(2*time.Hour)))
		if err == nil && (!again.Already || !slices.Equal(again.Newly, []string{"SND"}) || len(again.Units) != 3) {
			t.Errorf("second CA revocation %+v", again)
		}
		cas, _ := store.RevokedCAs(tx)
		if cas[rev.SHA256].Reason != "key leaked" {
			t.Errorf("first revocation replaced: %+v", cas[rev.SHA256])
		}
		u, _ := store.GetUnit(tx, "SND")
		if u.Revocation.Reason != "key leaked" {
			t.Errorf("late unit revocation %+v", u.Revocation)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		for s, want := range map[string]string{"SNA": store.StatusRevoked, "SNB": store.StatusRevoked, "SNC": store.StatusProvisioned} {
			u, _ := store.GetUnit(tx, s)
			if u.Status != want {
				t.Errorf("%s: %s, want %s", s, u.Status, want)
			}
			if want == store.StatusRevoked && u.Revocation.Issuer != rev.SHA256 {
				t.Errorf("%s: issuer %q", s, u.Revocation.Issuer)
			}
		}
		return nil
	})
	o.OnlyNew = true
	res := runExport(t, db, o)
	if len(res.Manifest.Files) != 1 || res.Manifest.Files[0].Name != rev.GroupID+".json" {
		t.Fatalf("delta groups %+v", res.Manifest.Files)
	}
	var g EnrollmentGroup
	json.Unmarshal(dirtest.Read(t, o.Out)[rev.GroupID+".json"], &g)
	if g.ProvisioningStatus != StatusDisabled || !strings.Contains(g.Attestation.X509.SigningCertificates.Primary.Certificate, "BEGIN CERTIFICATE") {
		t.Fatalf("disabled group %+v", g)
	}
	o.OnlyNew = false
	res = runExport(t, db, o)
	if res.Manifest.Counts.Groups != 2 || res.Manifest.Counts.Enabled != 1 || res.Manifest.Counts.Disabled != 1 {
		t.Fatalf("full groups %+v", res.Manifest.Counts)
	}
	if _, err := ParseCACert(a.EKPublic); err == nil {
		t.Fatal("garbage parsed as a CA")
	}
	leafPEM := []byte(certPEM(c.Cert))
	if _, err := ParseCACert(leafPEM); !errors.Is(err, ErrNotCA) {
		t.Fatalf("leaf accepted as CA: %v", err)
	}
}

func TestCSVExport(t *testing.T) {
	db := openDB(t)
	storetest.PutUnits(t, db, tpmUnits(3, "SN")...)
	revoke(t, db, "SN00001")
	out := filepath.Join(t.TempDir(), "units.csv")
	o := baseOpts(t, FormatCSV, out)
	runExport(t, db, o)
	f, _ := os.Open(out)
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || !slices.Equal(rows[0], CSVHeader) {
		t.Fatalf("rows %v", rows)
	}
	u := tpmUnit("SN00000", "SN00000", 0)
	if rows[1][0] != "SN00000" || rows[1][1] != u.RegistrationID || rows[1][5] != base64.StdEncoding.EncodeToString(u.EKPublic) ||
		rows[1][8] != "2026-03-01T08:00:30Z" || rows[2][9] != store.StatusRevoked {
		t.Fatalf("rows %v", rows[1:])
	}
	o.OnlyNew = true
	runExport(t, db, o)
	b, _ := os.ReadFile(out)
	if strings.Count(string(b), "\n") != 1 {
		t.Fatalf("only-new csv: %q", b)
	}
}

// Export reads only; the bookkeeping changes when Record runs, and two
// exports that read the same state cannot both record.
func TestRecordAndConcurrentExport(t *testing.T) {
	db := openDB(t)
	storetest.PutUnits(t, db, tpmUnits(3, "SN")...)
	dir := t.TempDir()
	o := baseOpts(t, FormatBulk, filepath.Join(dir, "a"))
	o.OnlyNew = true
	var a, b *Result
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		if a, err = Export(tx, o); err != nil {
			return err
		}
		o.Out = filepath.Join(dir, "b")
		b, err = Export(tx, o)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Discard()
	defer b.Discard()
	if err := db.Update(func(tx *bolt.Tx) error { return a.Record(tx) }); err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return b.Record(tx) })
	if !errors.Is(err, ErrConcurrentExport) {
		t.Fatalf("second record: %v", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return a.Record(tx) }); err == nil {
		t.Fatal("recorded twice")
	}
	// a recorded: the delta is now empty. An export never recorded (b)
	// changed nothing.
	o.Out = filepath.Join(dir, "c")
	if res := runExport(t, db, o); res.Manifest.Counts.Enrolled != 0 || res.Manifest.Counts.Unchanged != 3 {
		t.Fatalf("after record: %+v", res.Manifest.Counts)
	}
	spool := b.ledger.f.Name()
	b.Discard()
	if _, err := os.Stat(spool); err == nil {
		t.Fatal("ledger spool left behind by Discard")
	}
	if a.ledger.f != nil {
		t.Fatal("ledger spool kept after Record")
	}
}

// Two units with one registration ID (a clone inside one station) stop a
// dps-individual export instead of one file silently replacing the other.
func TestIndividualDuplicateRegistrationID(t *testing.T) {
	db := openDB(t)
	a, b := tpmUnit("SN1", "same-tpm", 0), tpmUnit("SN2", "same-tpm", 1)
	storetest.PutUnits(t, db, a, b)
	o := baseOpts(t, FormatIndividual, filepath.Join(t.TempDir(), "ind"))
	err := db.View(func(tx *bolt.Tx) error { _, err := Export(tx, o); return err })
	if !errors.Is(err, ErrDuplicates) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(o.Out); !os.IsNotExist(err) {
		t.Fatal("partial export left behind")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(o.Out), ".*")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}
