package station

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// What a killed run leaves on a unit's TPM, and how the next run clears it:
//
//   - transient objects and sessions, on a TPM without a resource manager
//     (swtpm, /dev/tpm0, the simulator): flushed (tpmops.FlushStale);
//   - the DPS test key verify persists at 0x81000100: journaled in the
//     database (store.PutDPSKey, with its TPM Name) before it is persisted,
//     so the next verify or provision of that unit evicts exactly that key
//     and nothing else.

// clearLeftovers flushes stale transients and removes the DPS test key a
// killed verify left on the TPM of unit u (whose recorded EK must be the one
// the TPM holds: a journal entry is never applied to another TPM). It
// returns what it did, for the report and the audit log.
func clearLeftovers(env *Env, t *tpmops.TPM, u *store.Unit) ([]string, error) {
	var did []string
	n, err := t.FlushStale()
	if err != nil {
		return nil, fmt.Errorf("flushing transient handles a killed run left loaded: %w", err)
	}
	if n > 0 {
		did = append(did, fmt.Sprintf("flushed %d transient handle(s) a killed run left loaded", n))
	}
	if u == nil || u.EKSHA256 == "" {
		return did, nil
	}
	var j *store.DPSKeyJournal
	if err := env.DB.View(func(tx *bolt.Tx) error {
		j, err = store.GetDPSKey(tx, u.EKSHA256)
		return err
	}); err != nil {
		return did, fmt.Errorf("reading the DPS test-key journal: %w", err)
	}
	if j == nil {
		return did, nil
	}
	if !holdsEK(t, u) {
		return did, nil // not this unit's TPM: its journal waits for the right one
	}
	removed, err := t.RemoveDPSKey(tpmops.Handle(j.Handle), j.Name, nil)
	switch {
	case errors.Is(err, tpmops.ErrForeignKey):
		// Another key took the handle since: ours is not there; leave that one.
	case err != nil:
		return did, fmt.Errorf("removing the DPS test key a killed verify left at %s: %w", handleHex(j.Handle), err)
	case removed:
		did = append(did, fmt.Sprintf("removed the DPS test key a killed verify (%s) left at %s", j.At.UTC().Format(time.RFC3339), handleHex(j.Handle)))
	}
	if err := env.DB.Update(func(tx *bolt.Tx) error { return store.DeleteDPSKey(tx, u.EKSHA256) }); err != nil {
		return did, fmt.Errorf("clearing the DPS test-key journal: %w", err)
	}
	return did, nil
}

// holdsEK reports whether the TPM holds unit u's recorded EK at its handle.
func holdsEK(t *tpmops.TPM, u *store.Unit) bool {
	_, h, err := tpmops.EKTemplate(tpmops.Alg(u.EKType))
	if err != nil {
		return false
	}
	k, err := t.ReadPublic(h)
	return err == nil && bytes.Equal(k.Public, u.EKPublic)
}
