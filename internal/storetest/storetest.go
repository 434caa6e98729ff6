// Package storetest holds test helpers for the packages above store that
// need a station database with units in it. (store's own tests keep theirs:
// they cannot import a package that imports store.)
package storetest

import (
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/store"
)

// PutUnits writes units to db in one transaction.
func PutUnits(tb testing.TB, db *store.DB, us ...*store.Unit) {
	tb.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		for _, u := range us {
			if err := store.PutUnit(tx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}
