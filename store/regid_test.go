package store

import (
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestRegistrationIDIndex: IDs are found whatever their case, in a database
// written before the index existed (scanned, then indexed on the first
// write) as in a new one; the first unit keeps an ID.
func TestRegistrationIDIndex(t *testing.T) {
	db := mustCreateDB(t)
	update := func(fn func(tx *bolt.Tx) error) {
		t.Helper()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *bolt.Tx) error {
		if err := PutUnit(tx, &Unit{Serial: "CASE-A", RegistrationID: "Case-A"}); err != nil {
			return err
		}
		return tx.DeleteBucket(bucketRegIDs) // as an older station wrote it
	})
	db.View(func(tx *bolt.Tx) error {
		if s := SerialByRegistrationID(tx, "case-a"); s != "CASE-A" {
			t.Errorf("unindexed lookup of case-a = %q, want CASE-A", s)
		}
		return nil
	})
	update(func(tx *bolt.Tx) error {
		if err := PutUnit(tx, &Unit{Serial: "B", RegistrationID: "b"}); err != nil {
			return err
		}
		// A later unit written with a clashing ID does not take it over.
		return PutUnit(tx, &Unit{Serial: "case-a", RegistrationID: "case-a"})
	})
	db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRegIDs) == nil {
			t.Fatal("the index was not built on the first write")
		}
		for id, want := range map[string]string{"CASE-A": "CASE-A", "case-a": "CASE-A", "B": "B", "nope": ""} {
			if s := SerialByRegistrationID(tx, id); s != want {
				t.Errorf("SerialByRegistrationID(%q) = %q, want %q", id, s, want)
			}
		}
		return nil
	})
}
