package station

import (
	"context"
	"errors"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// provisionHints replace tpmops' generic hints (hint.Override) for the TPM
// conditions a provision run answers differently: it resumes where it
// stopped, so re-running provision for the unit is the retry. The first
// match wins.
var provisionHints = []struct {
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
}

// withStepHint returns err, a provision failure of unit serial at step,
// with the operator's next step: how to resume when the run was
// interrupted (Ctrl-C, SIGTERM); the database's own hint when the database failed;
// provision's override for a TPM condition of provisionHints; otherwise
// the cause's own hint (a refusal, a certgen or flash error) or, when the
// cause has none, provision's default (fix the named configuration key, or
// re-run provision, which resumes at step).
func withStepHint(serial, step string, err error) error {
	if errors.Is(err, context.Canceled) {
		return hint.Override(err, InterruptedHint("provision", serial))
	}
	var se *store.Error // the database's own failures say what to do
	if errors.As(err, &se) {
		return err
	}
	for _, h := range provisionHints {
		if errors.Is(err, h.err) {
			return hint.Override(err, h.hint)
		}
	}
	var ce *configs.Error
	switch {
	case errors.As(err, &ce):
		return hint.Wrap(err, "fix the configuration ("+ce.Key+") and re-run provision for this unit")
	case step == StepFlash:
		return hint.Wrap(err, "check the flash target and re-run provision for this unit: it resumes at the flash step")
	}
	return hint.Wrap(err, "re-run provision for this unit: it resumes at step "+step)
}

// VerifyFailedHint is the hint of a unit whose verify checks failed, when no
// failed condition has a hint of its own (the JSON object and the live screen say
// the same).
func VerifyFailedHint(serial string) string {
	return "set the unit aside for QA: `station units show " + serial + "` has its record"
}

// InterruptedHint is the hint of a unit whose command (provision or
// verify) was interrupted: nothing is wrong with the unit or the fixture.
func InterruptedHint(command, serial string) string {
	if command == "provision" {
		return "interrupted: re-run `station provision --serial " + serial + "` to resume"
	}
	return "interrupted: re-run `station " + command + " --serial " + serial + "`"
}
