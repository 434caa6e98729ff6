package station

import (
	"errors"

	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// hints say what an operator does next, for the failures that have one
// answer. The first match wins.
var hints = []struct {
	err  error
	hint string
}{
	{tpmops.ErrUnreachable, "check the fixture's TPM connection (tpm.address or --tpm) and re-run provision for this unit: it resumes where it stopped"},
	{tpmops.ErrLockout, "the TPM is in dictionary-attack lockout: set the unit aside for QA; do not retry"},
	{tpmops.ErrUntrustedEKCert, "the TPM's EK certificate does not chain to tpm.vendor_roots: set the unit aside, or add its vendor's CA to the bundle if the vendor is approved"},
	{tpmops.ErrNoEKCert, "the TPM holds no EK certificate: set the unit aside (or set tpm.require_ek_cert: false where the policy allows it)"},
	{tpmops.ErrEKMismatch, "the key at 0x81010001 is not this TPM's standard EK: set the unit aside for QA; station never evicts it"},
	{tpmops.ErrForeignKey, "a persistent handle station needs holds a key it did not create: set the unit aside for QA; station never evicts it"},
	{ErrOwnedElsewhere, "the TPM was already taken by someone else: set the unit aside; clearing it needs its owner"},
	{ErrDuplicateEK, "this TPM is already provisioned under another serial: check the label, or quarantine a possible clone"},
	{ErrSerialOtherTPM, "the serial belongs to a unit with another TPM: check the label and the fixture"},
	{ErrRevoked, "the unit is revoked and cannot be provisioned again"},
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
	if step == StepFlash {
		return "check the flash target and re-run provision for this unit: it resumes at the flash step"
	}
	return "re-run provision for this unit: it resumes at step " + step
}
