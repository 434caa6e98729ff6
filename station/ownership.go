package station

import (
	"fmt"
	"time"

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
// applied; a resumed run treats an escrow still pending as applied exactly
// when the TPM reports that hierarchy's auth set, and otherwise replaces it.
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
// (by this station: preflight refused any other case).
func (r *unitRun) takeAuth(name string, h tpmops.Hierarchy, alreadySet bool) error {
	if esc := escrowOf(r.u, name); esc != nil && alreadySet {
		esc.Pending = false
		return nil
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
	e := store.Escrow{Hierarchy: name, JWE: jwe, Pending: true, CreatedAt: time.Now().UTC()}
	if old := escrowOf(r.u, name); old != nil {
		*old = e
	} else {
		r.u.Escrows = append(r.u.Escrows, e)
	}
	if err := r.commit(nil); err != nil { // escrowed durably before it is applied
		return err
	}
	if err := r.tpm.ChangeAuth(h, nil, secret, r.srk); err != nil {
		return fmt.Errorf("setting %s auth: %w", name, err)
	}
	escrowOf(r.u, name).Pending = false
	return nil
}
