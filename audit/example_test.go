package audit_test

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
)

// A unit's steps are appended in the transaction that changes the unit, a
// checkpoint is signed after the unit, and the export verifies offline with
// nothing but the station's public key.
func Example() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)
	db, _ := bolt.Open(filepath.Join(dir, "station.db"), 0o600, nil)
	defer db.Close()
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // use audit.GenerateKey/LoadPrivateKey
	log, err := audit.Open(db, "line1-st03", "v1.0.0", key)
	if err != nil {
		panic(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, step := range []string{"provision.ek", "provision.cert", "provision.done"} {
			if _, err := log.Append(tx, audit.Event{Serial: "SN1", Type: step, Operator: "alice", Payload: map[string]string{"detail": "ok"}}); err != nil {
				return err
			}
		}
		return nil // every Append signs a checkpoint of the tree it makes
	})
	if err != nil {
		panic(err)
	}
	if _, err := log.Export(filepath.Join(dir, "export"), audit.ExportOptions{Operator: "alice"}); err != nil {
		panic(err)
	}
	rep, err := audit.VerifyExport(filepath.Join(dir, "export"), key.Public(), nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(rep.Origin, rep.Records, "records verified")
	// Output: station/line1-st03 3 records verified
}
