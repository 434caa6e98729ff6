package station

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// escrow returns the unit's escrow for hierarchy, or nil.
func escrowOf(u *store.Unit, hierarchy string) *store.Escrow {
	for i := range u.Escrows {
		if u.Escrows[i].Hierarchy == hierarchy {
			return &u.Escrows[i]
		}
	}
	return nil
}

// stepOwnership sets the dictionary-attack parameters (while the lockout auth
// is still empty), then the owner auth when the policy escrows it, then a
// random lockout auth. Each new value is escrowed and committed before it is
// applied; a resumed run treats an escrow still pending as applied only when
// the TPM proves it holds that value (provePending), replaces it when the
// hierarchy's auth is not set, and otherwise refuses the unit.
// The endorsement auth is never touched: DPS's PolicySecret needs it empty.
func (r *unitRun) stepOwnership() ([]audit.Event, error) {
	cfg := r.p.env.Config.Ownership
	if err := r.ensureSRK(); err != nil {
		return nil, err
	}
	// Preflight read the auth bits on this connection and no step since
	// touches a hierarchy auth: no second round trip.
	perm := r.perm
	da := tpmops.DAParams{MaxTries: cfg.DAMaxTries, RecoverySeconds: cfg.DARecoverySeconds, LockoutRecoverySeconds: cfg.DALockoutRecoverySeconds}
	if !perm.LockoutAuthSet {
		if err := r.tpm.SetDAParams(nil, da); err != nil {
			return nil, fmt.Errorf("setting dictionary-attack parameters: %w", err)
		}
	}
	if cfg.OwnerAuth == "escrow" {
		if err := r.takeAuth("owner", tpmops.Owner, perm.OwnerAuthSet); err != nil {
			return nil, err
		}
	}
	if err := r.takeAuth("lockout", tpmops.Lockout, perm.LockoutAuthSet); err != nil {
		return nil, err
	}
	after, err := r.tpm.Permanent()
	if err != nil {
		return nil, err
	}
	if !after.LockoutAuthSet || after.EndorsementAuthSet || after.OwnerAuthSet != (cfg.OwnerAuth == "escrow") {
		return nil, fmt.Errorf("after taking ownership the TPM reports lockoutAuthSet=%v ownerAuthSet=%v endorsementAuthSet=%v", after.LockoutAuthSet, after.OwnerAuthSet, after.EndorsementAuthSet)
	}
	return []audit.Event{{Type: "provision.ownership", Payload: map[string]any{
		"owner_policy": cfg.OwnerAuth, "lockout": "escrowed", "endorsement": "empty",
		"da_max_tries": da.MaxTries, "da_recovery_seconds": da.RecoverySeconds, "da_lockout_recovery_seconds": da.LockoutRecoverySeconds,
		"escrow_digests": r.escrowDigests(),
	}}}, nil
}

// escrowDigests identifies the escrows in the audit trail without revealing
// anything (the JWEs are encrypted; their hashes tie the record to them).
func (r *unitRun) escrowDigests() map[string]string {
	out := map[string]string{}
	for _, e := range r.u.Escrows {
		out[e.Hierarchy] = sha256hex([]byte(e.JWE))
	}
	return out
}

// takeAuth sets hierarchy h to a fresh random value unless it is already set
// (by this station: preflight refused any other case). The value is
// escrowed, and sealed to this TPM, in one commit before it is applied: a
// run that stops before it learns whether HierarchyChangeAuth happened
// leaves a pending escrow, which provePending settles on resume.
func (r *unitRun) takeAuth(name string, h tpmops.Hierarchy, alreadySet bool) error {
	if esc := escrowOf(r.u, name); esc != nil && alreadySet {
		if !esc.Pending {
			return nil
		}
		return r.provePending(name, h, esc)
	}
	secret, err := randomAuth()
	if err != nil {
		return err
	}
	defer clear(secret)
	jwe, err := r.p.escrow.Seal(r.u.Serial, name, secret)
	if err != nil {
		return err
	}
	secrets, err := r.secretSession()
	if err != nil {
		return err
	}
	sealed, err := secrets.Seal(r.srk, secret)
	if err != nil {
		return fmt.Errorf("sealing the new %s auth to the TPM: %w", name, err)
	}
	e := store.Escrow{Hierarchy: name, JWE: jwe, Pending: true, CreatedAt: time.Now().UTC()}
	if old := escrowOf(r.u, name); old != nil {
		*old = e
	} else {
		r.u.Escrows = append(r.u.Escrows, e)
	}
	// Escrowed durably before it is applied.
	if err := r.commit(nil, func(tx *bolt.Tx) error { return store.PutPendingSeal(tx, r.u.Serial, name, sealed) }); err != nil {
		return err
	}
	if err := secrets.ChangeAuth(h, nil, secret); err != nil {
		return fmt.Errorf("setting %s auth: %w", name, err)
	}
	escrowOf(r.u, name).Pending = false
	return nil
}

// provePending settles a pending escrow on a TPM that reports the
// hierarchy's auth set. Either the last run's HierarchyChangeAuth happened
// and the TPM holds the escrowed value, or someone set the auth since: the
// escrow counts as applied only when the TPM proves it holds that value.
//
// The proof needs the value, which the station cannot read back from the
// escrow (it holds only the escrow public key): takeAuth sealed a copy to
// this TPM (store.PutPendingSeal), which only this TPM can unseal. The TPM
// then proves it holds the value without it crossing the bus
// (tpmops.ProveAuth: an idempotent HierarchyChangeAuth authorized by an HMAC
// session keyed with it). A wrong lockout value disables the TPM's lockout
// authorization for its lockout recovery time: so each sealed value is tried
// once, and forgotten when the TPM refuses it; the unit is then refused as
// owned by someone else, never guessed at.
func (r *unitRun) provePending(name string, h tpmops.Hierarchy, esc *store.Escrow) error {
	var sealed []byte
	if err := r.p.env.DB.View(func(tx *bolt.Tx) error {
		sealed = store.PendingSeal(tx, r.u.Serial, name)
		return nil
	}); err != nil {
		return err
	}
	owned := func(why string, args ...any) error {
		return fmt.Errorf("%w: the %s auth is set but is not proven to be the value station escrowed (pending since %s): %s",
			ErrOwnedElsewhere, name, esc.CreatedAt.Format(time.RFC3339), fmt.Sprintf(why, args...))
	}
	if sealed == nil {
		return owned("no sealed copy is left to prove it with")
	}
	secret, err := r.tpm.Unseal(r.srk, sealed)
	if errors.Is(err, tpmops.ErrUnreachable) {
		return err
	}
	if err != nil {
		return owned("the TPM cannot unseal station's copy (%v)", err)
	}
	defer clear(secret)
	err = r.tpm.ProveAuth(h, secret, r.srk)
	switch {
	case err == nil:
		esc.Pending = false // the commit that records it forgets the sealed copy
		return nil
	case errors.Is(err, tpmops.ErrBadAuth):
		// Forget the copy first: a resumed run never presents it again.
		if derr := r.p.env.DB.Update(func(tx *bolt.Tx) error { return store.DeletePendingSeal(tx, r.u.Serial, name) }); derr != nil {
			return errors.Join(owned("the TPM holds another value"), derr)
		}
		if h == tpmops.Lockout {
			return owned("the TPM holds another value, so someone else set it after the last run stopped (the refused proof disables the TPM's lockout authorization for its lockout recovery time)")
		}
		return owned("the TPM holds another value, so someone else set it after the last run stopped")
	case errors.Is(err, tpmops.ErrLockout):
		return owned("the TPM's lockout authorization is disabled (a wrong lockout auth was tried) so it cannot prove it now (%v)", err)
	case errors.Is(err, tpmops.ErrUnreachable):
		return err
	}
	return owned("%v", err)
}
