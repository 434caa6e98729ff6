package tpmops

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Sentinel errors callers branch on. Every error returned by this package that
// stems from one of these conditions wraps the sentinel (errors.Is works).
var (
	// ErrUnreachable: the TPM could not be opened or stopped answering.
	ErrUnreachable = errors.New("TPM unreachable")
	// ErrBadAddress: the TPM address is malformed (a usage or configuration
	// error, not a retryable one).
	ErrBadAddress = errors.New("bad TPM address")
	// ErrEKMismatch: the key persisted at the EK handle is not the EK the
	// standard template gives on this TPM.
	ErrEKMismatch = errors.New("key at the EK handle is not the standard EK")
	// ErrNoEKCert: no EK certificate in the TPM's NV.
	ErrNoEKCert = errors.New("no EK certificate in NV")
	// ErrUntrustedEKCert: the EK certificate does not chain to a trusted
	// vendor root or does not certify this EK.
	ErrUntrustedEKCert = errors.New("untrusted EK certificate")
	// ErrForeignKey: a persistent handle holds a key this station did not
	// make and will not reuse (it is never evicted).
	ErrForeignKey = errors.New("foreign key at persistent handle")
	// ErrHandleEmpty: nothing at the handle (object or NV index).
	ErrHandleEmpty = errors.New("handle empty")
	// ErrLockout: the TPM is in dictionary-attack lockout.
	ErrLockout = errors.New("TPM in dictionary-attack lockout")
	// ErrBadAuth: an authorization value was refused.
	ErrBadAuth = errors.New("authorization refused")
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

// isHandleErr reports a TPM_RC_HANDLE (nothing at that handle).
func isHandleErr(err error) bool {
	return errors.Is(err, tpm2.TPMRCHandle)
}
