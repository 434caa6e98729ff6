package station

import (
	"errors"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// hints say what an operator does next, for the failures that have one
// answer. The first match wins.
var hints = []struct {
	err  error
	hint string
}{
	{tpmops.ErrBadAddress, "fix the TPM address (--tpm, the batch file's tpm column or tpm.address): sim, sim:SEED, swtpm://HOST:PORT, unix:///PATH or a device path such as /dev/tpmrm0"},
	{tpmops.ErrUnreachable, "check the fixture's TPM connection (tpm.address or --tpm) and re-run provision for this unit: it resumes where it stopped"},
	{tpmops.ErrTPMBusy, "the TPM ran out of object or session slots or is busy: re-run provision for this unit (it flushes what a killed run left loaded and resumes where it stopped); power-cycle the unit if it persists"},
	{tpmops.ErrLockout, "the TPM is in dictionary-attack lockout (too many failed authorizations): set the unit aside for QA; do not retry"},
	{tpmops.ErrUntrustedEKCert, "the TPM's EK certificate does not chain to tpm.vendor_roots: set the unit aside, or add its vendor's CA to the bundle if the vendor is approved"},
	{tpmops.ErrNoEKCert, "the TPM holds no EK certificate: set the unit aside (or set tpm.require_ek_cert: false where the policy allows it)"},
	{tpmops.ErrEKMismatch, "the key at 0x81010001 is not this TPM's standard EK: set the unit aside for QA; station never evicts it"},
	{tpmops.ErrForeignKey, "a persistent handle station needs holds a key it did not create: set the unit aside for QA; station never evicts it"},
	{ErrOwnedElsewhere, "the TPM was already taken by someone else: set the unit aside; clearing it needs its owner"},
	{ErrDuplicateEK, "this TPM is already provisioned under another serial: check the label, or quarantine a possible clone"},
	{ErrSerialOtherTPM, "the serial belongs to a unit with another TPM: check the label and the fixture"},
	{ErrRevoked, "the unit is revoked and cannot be provisioned again"},
	{ErrIssuerRevoked, "issue a new line intermediate (station ca issue-intermediate), point pki.issuer_cert and pki.issuer_key at it, then re-run provision"},
	{ErrDuplicateRegID, "DPS would see two units under one registration ID: check the serial label (IDs differing only in case are the same ID), or change dps.registration_id"},
}

func hintFor(step string, err error) string {
	var se *store.Error // the database's own failures say what to do
	if errors.As(err, &se) {
		return se.Hint()
	}
	for _, h := range hints {
		if errors.Is(err, h.err) {
			return h.hint
		}
	}
	// A cause that knows its own next step (a configuration problem, a
	// certgen refusal) says it: re-running would only fail the same way.
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		return h.Hint()
	}
	var ce *configs.Error
	if errors.As(err, &ce) {
		return "fix the configuration (" + ce.Key + ") and re-run provision for this unit"
	}
	if step == StepFlash {
		return "check the flash target and re-run provision for this unit: it resumes at the flash step"
	}
	return "re-run provision for this unit: it resumes at step " + step
}
