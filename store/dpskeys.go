package store

import (
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketDPSKeys journals the DPS test keys verify persists on units' TPMs:
// EK SHA-256 hex -> DPSKeyJournal JSON. The entry is written before the key
// is persisted and deleted once it is removed, so a run killed in between
// leaves an entry naming exactly the key it left behind. The bucket is made
// on first use.
var bucketDPSKeys = []byte("verify.dps-keys")

// DPSKeyJournal says which key a verify was about to persist, where.
type DPSKeyJournal struct {
	Serial string    `json:"serial"`
	Handle uint32    `json:"handle"`
	Name   []byte    `json:"name"` // the key's TPM Name: only that key is ever evicted
	At     time.Time `json:"at"`
}

// PutDPSKey journals a DPS test key about to be persisted on the TPM with
// that EK.
func PutDPSKey(tx *bolt.Tx, ekSHA256 string, j DPSKeyJournal) error {
	b, err := tx.CreateBucketIfNotExists(bucketDPSKeys)
	if err != nil {
		return err
	}
	v, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return b.Put([]byte(ekSHA256), v)
}

// GetDPSKey returns the journaled DPS test key of the TPM with that EK, or
// nil when there is none.
func GetDPSKey(tx *bolt.Tx, ekSHA256 string) (*DPSKeyJournal, error) {
	b := tx.Bucket(bucketDPSKeys)
	if b == nil {
		return nil, nil
	}
	v := b.Get([]byte(ekSHA256))
	if v == nil {
		return nil, nil
	}
	var j DPSKeyJournal
	if err := json.Unmarshal(v, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// DeleteDPSKey drops the journal entry of the TPM with that EK.
func DeleteDPSKey(tx *bolt.Tx, ekSHA256 string) error {
	b := tx.Bucket(bucketDPSKeys)
	if b == nil {
		return nil
	}
	return b.Delete([]byte(ekSHA256))
}
