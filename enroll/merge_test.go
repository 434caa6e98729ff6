package enroll

import (
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/factory-id/station/internal/dirtest"
	"github.com/factory-id/station/internal/storetest"
	"github.com/factory-id/station/store"
)

// stationExport exports units from a fresh database of station id, signed
// with key seed.
func stationExport(t *testing.T, id string, seed byte, format string, us ...*store.Unit) string {
	t.Helper()
	db := openDB(t)
	storetest.PutUnits(t, db, us...)
	o := baseOpts(t, format, filepath.Join(t.TempDir(), id))
	o.StationID, o.Signer = id, testSigner(t, seed)
	runExport(t, db, o)
	return o.Out
}

func mergedEnrollments(t *testing.T, dir string, m *Manifest) map[string]IndividualEnrollment {
	t.Helper()
	out := map[string]IndividualEnrollment{}
	for _, f := range m.Files {
		if f.Mode == "" {
			continue
		}
		for _, e := range readBulk(t, dir, f.Name).Enrollments {
			if _, dup := out[e.RegistrationID]; dup {
				t.Fatalf("%s twice in the merged export", e.RegistrationID)
			}
			out[e.RegistrationID] = e
		}
	}
	return out
}

func TestMerge(t *testing.T) {
	// Station A: A0..A4. Station B: B0..B3, plus a clone of A1's EK (B9),
	// and a unit reusing serial A2 with another EK. Station C: a disabled
	// enrollment of A3's EK (revoked there), in dps-individual format.
	as := tpmUnits(5, "A")
	bs := tpmUnits(4, "B")
	clone := tpmUnit("B9", "A00001", 9) // same EK as A00001
	sameSerial := tpmUnit("A00002", "other-tpm", 10)
	revokedCopy := tpmUnit("C0", "A00003", 11)
	revokedCopy.Status = store.StatusRevoked
	dirA := stationExport(t, "st-a", 1, FormatBulk, as...)
	dirB := stationExport(t, "st-b", 2, FormatBulk, append(bs, clone, sameSerial)...)
	dirC := stationExport(t, "st-c", 3, FormatIndividual, revokedCopy)
	keys := []crypto.PublicKey{testSigner(t, 1).Public(), testSigner(t, 2).Public(), testSigner(t, 3).Public()}
	merger := testSigner(t, 9)
	out := filepath.Join(t.TempDir(), "merged")

	rep, err := Merge(MergeOptions{Dirs: []string{dirC, dirB, dirA}, Trusted: keys, Out: out, Signer: merger, StationID: "plant"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, d := range rep.Duplicates {
		var where []string
		for _, o := range d.Occurrences {
			where = append(where, o.StationID+"/"+o.Serial)
		}
		got[d.Kind] = append(got[d.Kind], where...)
	}
	want := map[string][]string{
		"ek":              {"st-a/A00001", "st-b/B9", "st-a/A00003", "st-c/C0"},
		"registration-id": {"st-a/A00001", "st-b/B9", "st-a/A00003", "st-c/C0"},
		"serial":          {"st-a/A00002", "st-b/A00002"},
	}
	for k, w := range want {
		slices.Sort(w)
		g := got[k]
		slices.Sort(g)
		if !slices.Equal(g, w) {
			t.Errorf("%s duplicates: %v, want %v", k, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("duplicate kinds %v", got)
	}

	m, err := VerifyExport(out, merger.Public())
	if err != nil {
		t.Fatal(err)
	}
	es := mergedEnrollments(t, out, m)
	// Left out: the enabled clones (A1, B9), both units with serial A00002,
	// and A3 (enabled, its EK also at st-c); kept: C0's disabled enrollment.
	if rep.Excluded != 5 || len(es) != 7 {
		t.Fatalf("excluded %d, merged %d", rep.Excluded, len(es))
	}
	for _, u := range []*store.Unit{as[1], clone, as[2], sameSerial} {
		if _, ok := es[u.RegistrationID]; ok {
			t.Errorf("duplicate %s/%s was merged", u.StationID, u.Serial)
		}
	}
	if e := es[revokedCopy.RegistrationID]; e.ProvisioningStatus != StatusDisabled {
		t.Errorf("the disabled enrollment of a duplicate must be kept: %+v", e)
	}
	for _, u := range []*store.Unit{as[0], as[4], bs[0], bs[3]} {
		if _, ok := es[u.RegistrationID]; !ok {
			t.Errorf("%s missing from the merge", u.Serial)
		}
	}
	var dups []Duplicate
	b, _ := os.ReadFile(filepath.Join(out, DuplicatesFile))
	if err := json.Unmarshal(b, &dups); err != nil || len(dups) != len(rep.Duplicates) {
		t.Fatalf("duplicates.json: %v %d", err, len(dups))
	}
	if len(m.Sources) != 3 || m.Sources[0].StationID != "st-a" {
		t.Fatalf("sources %+v", m.Sources)
	}

	// Same inputs in another order: same bytes.
	out2 := filepath.Join(t.TempDir(), "merged2")
	if _, err := Merge(MergeOptions{Dirs: []string{dirA, dirB, dirC}, Trusted: keys, Out: out2, Signer: merger, StationID: "plant"}); err != nil {
		t.Fatal(err)
	}
	d1, d2 := dirtest.Read(t, out), dirtest.Read(t, out2)
	if len(d1) != len(d2) {
		t.Fatalf("file sets differ: %v / %v", names(d1), names(d2))
	}
	for k := range d1 {
		if string(d1[k]) != string(d2[k]) {
			t.Errorf("%s differs with input order", k)
		}
	}
}

func TestMergeRefusals(t *testing.T) {
	dirA := stationExport(t, "st-a", 1, FormatBulk, tpmUnits(3, "A")...)
	good := []crypto.PublicKey{testSigner(t, 1).Public()}
	tampered := copyDir(t, dirA)
	edit(t, tampered, "0001.json", func(b []byte) []byte { b[50] ^= 1; return b })
	impostor := stationExport(t, "st-a", 2, FormatBulk, tpmUnit("X1", "A00000", 0))
	dirB := stationExport(t, "st-b", 2, FormatBulk, tpmUnits(1, "B")...)
	dirB2 := stationExport(t, "st-c", 2, FormatBulk, tpmUnits(1, "C")...)
	both := []crypto.PublicKey{testSigner(t, 1).Public(), testSigner(t, 2).Public()}
	out := filepath.Join(t.TempDir(), "m")
	tests := []struct {
		name string
		o    MergeOptions
		want error
	}{
		{"untrusted-station", MergeOptions{Dirs: []string{dirA}, Trusted: []crypto.PublicKey{testSigner(t, 5).Public()}}, ErrSignature},
		{"no-keys", MergeOptions{Dirs: []string{dirA}}, ErrNoKey},
		{"tampered-input", MergeOptions{Dirs: []string{tampered}, Trusted: good}, ErrTampered},
		{"nothing", MergeOptions{Trusted: good}, ErrOptions},
		{"out-is-input", MergeOptions{Dirs: []string{dirA}, Trusted: good, Out: dirA}, ErrOptions},
		// Station B's key signing as station A: it would pass B's clones
		// off as A's own later updates.
		{"key-poses-as-other-station", MergeOptions{Dirs: []string{dirA, impostor}, Trusted: both}, ErrSignature},
		{"key-signs-two-stations", MergeOptions{Dirs: []string{dirB, dirB2}, Trusted: both}, ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.Out == "" {
				tc.o.Out = out
			}
			tc.o.Signer = testSigner(t, 9)
			_, err := Merge(tc.o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("a refused merge wrote output")
			}
		})
	}
}

// A later delta of the same station supersedes its earlier export and is
// not a duplicate.
func TestMergeLayersOneStation(t *testing.T) {
	db := openDB(t)
	us := tpmUnits(3, "A")
	storetest.PutUnits(t, db, us...)
	dir := t.TempDir()
	o := baseOpts(t, FormatBulk, filepath.Join(dir, "full"))
	runExport(t, db, o)
	revoke(t, db, "A00001")
	o.OnlyNew, o.Out = true, filepath.Join(dir, "delta")
	runExport(t, db, o)
	out := filepath.Join(dir, "merged")
	rep, err := Merge(MergeOptions{Dirs: []string{filepath.Join(dir, "delta"), filepath.Join(dir, "full")},
		Trusted: []crypto.PublicKey{o.Signer.Public()}, Out: out, Signer: o.Signer, StationID: "st1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Duplicates) != 0 || rep.Excluded != 0 {
		t.Fatalf("one station's layers reported as duplicates: %+v", rep.Duplicates)
	}
	es := mergedEnrollments(t, out, rep.Manifest)
	if len(es) != 3 || es[us[1].RegistrationID].ProvisioningStatus != StatusDisabled {
		t.Fatalf("merged %+v", es[us[1].RegistrationID])
	}
}
