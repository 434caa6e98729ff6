package tpmops

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/hint"
)

// Sentinel errors callers branch on. Every error returned by this package that
// stems from one of these conditions wraps the sentinel (errors.Is works);
// most carry the operator's next step (hint.Of).
var (
	// ErrUnreachable: the TPM could not be opened or stopped answering.
	ErrUnreachable = hint.New("TPM unreachable",
		"check the fixture's TPM connection (the --tpm address; swtpm running; /dev/tpmrm0 present and accessible), then retry")
	// ErrBadAddress: the TPM address is malformed (a usage or configuration
	// error, not a retryable one).
	ErrBadAddress = hint.New("bad TPM address",
		"use sim, sim:SEED, swtpm://HOST:PORT, unix:///PATH or a device path such as /dev/tpmrm0")
	// ErrEKMismatch: the key persisted at the EK handle is not the EK the
	// standard template gives on this TPM.
	ErrEKMismatch = hint.New("key at the EK handle is not the standard EK",
		"another tool persisted a non-standard EK (some DPS SDKs do); it was left in place: set the unit aside and clear its TPM deliberately")
	// ErrNoEKCert: no EK certificate in the TPM's NV.
	ErrNoEKCert = hint.New("no EK certificate in NV",
		"this TPM carries no manufacturer EK certificate; use TPMs that do, or set tpm.require_ek_cert: false")
	// ErrUntrustedEKCert: the EK certificate does not chain to a trusted
	// vendor root or does not certify this EK.
	ErrUntrustedEKCert = hint.New("untrusted EK certificate",
		"if this TPM vendor is approved, add its EK CA certificates to tpm.vendor_roots; otherwise set the unit aside")
	// ErrForeignKey: a persistent handle (or NV index) holds something this
	// station did not make and will not reuse; it is never evicted.
	ErrForeignKey = hint.New("foreign key at persistent handle",
		"the handle holds a key this station did not create; it was left in place: set the unit aside")
	// ErrHandleEmpty: nothing at the handle (object or NV index).
	ErrHandleEmpty = errors.New("handle empty")
	// ErrLockout: the TPM is in dictionary-attack lockout.
	ErrLockout = hint.New("TPM in dictionary-attack lockout",
		"too many failed authorizations: set the unit aside for QA (it recovers after its recovery time, or with the unit's escrowed lockout auth)")
	// ErrTPMBusy: the TPM is out of a resource (object or session slots,
	// memory, NV write rate) or kept asking to be retried: nothing is wrong
	// with the unit, and a later run (which flushes what a killed client
	// left loaded) succeeds.
	ErrTPMBusy = hint.New("TPM out of resources or busy",
		"the TPM ran out of object or session slots or is busy; re-run the command (it flushes what a killed run left loaded), and power-cycle the unit if it persists")
	// ErrBadAuth: an authorization value was refused.
	ErrBadAuth = hint.New("authorization refused",
		"the TPM refused an authorization: the unit may already be owned by someone else")
)

// classify adds this package's sentinels to a TPM response code error, so
// callers need not know go-tpm's error types.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, tpm2.TPMRCLockout):
		return fmt.Errorf("%w: %w", ErrLockout, err)
	case errors.Is(err, tpm2.TPMRCBadAuth), errors.Is(err, tpm2.TPMRCAuthFail):
		return fmt.Errorf("%w: %w", ErrBadAuth, err)
	}
	return err
}

// Response codes that say the TPM is out of a resource or busy, not that
// the command or the unit is wrong (TPM 2.0 Part 2, TPM_RC warnings).
var busyCodes = map[uint32]bool{
	0x902:   true,                                   // TPM_RC_OBJECT_MEMORY
	0x903:   true,                                   // TPM_RC_SESSION_MEMORY
	0x904:   true,                                   // TPM_RC_MEMORY
	0x905:   true,                                   // TPM_RC_SESSION_HANDLES
	0x906:   true,                                   // TPM_RC_OBJECT_HANDLES
	0x920:   true,                                   // TPM_RC_NV_RATE
	0x923:   true,                                   // TPM_RC_NV_UNAVAILABLE
	rcRetry: true, rcYielded: true, rcTesting: true, // still answered after every retry
}

// busyError returns an error wrapping ErrTPMBusy and the TPM's response
// code when rc is one of busyCodes, else nil.
func busyError(rc uint32) error {
	if !busyCodes[rc] {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrTPMBusy, tpm2.TPMRC(rc))
}

// isHandleErr reports a TPM_RC_HANDLE (nothing at that handle).
func isHandleErr(err error) bool {
	return errors.Is(err, tpm2.TPMRCHandle)
}
