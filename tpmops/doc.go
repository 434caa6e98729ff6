// Package tpmops is the station's TPM layer: it opens a unit's TPM by
// address and runs the TPM steps of the manufacturing timeline (EK and EK
// certificate, SRK, device identity key, ownership, NV) and the DPS
// credential activation, the same code for every transport.
//
// A *TPM is one connection; its methods run one TPM command sequence at a
// time and must not be called from several goroutines at once.
//
// # Guarantees
//
//   - One code path: go-tpm's direct tpm2 API over one transport.TPM, for the
//     in-process simulator ("sim", "sim:SEED"), swtpm ("swtpm://HOST:PORT",
//     "unix:///PATH", raw command stream on one connection) and a kernel
//     device ("/dev/tpmrm0"). TPM_RC_RETRY, YIELDED and TESTING are retried
//     with bounded backoff; an unreachable TPM wraps ErrUnreachable.
//   - Never evicts what it did not persist: a persistent handle that already
//     holds a key is either recognised (the standard EK, the SRK this station
//     recorded or the standard template's SRK) or refused with
//     ErrEKMismatch / ErrForeignKey, and left where it is. NV indices it did
//     not define are refused too.
//   - Flushes everything it loads: every transient object and session a call
//     creates is flushed before the call returns, on error paths too (a TPM
//     without a resource manager would otherwise run out of slots).
//     Transients() lets callers and tests check it.
//   - Never creates an RSA primary twice in one call (seconds on a discrete
//     TPM), and offers the reads that make one unnecessary: ReadEK checks a
//     persisted EK's shape (what a vendor certificate for its key then
//     proves), CheckSRKShape an SRK's. Stats counts commands by kind
//     (CreatePrimary by key type), so callers can pin what a unit costs.
//   - Secrets (hierarchy auths) never appear in errors; a new hierarchy auth
//     crosses to the TPM only inside a salted, parameter-encrypting session.
//   - Errors wrap the sentinels (ErrUnreachable, ErrBadAddress, ErrEKMismatch,
//     ErrNoEKCert, ErrUntrustedEKCert, ErrForeignKey, ErrHandleEmpty,
//     ErrLockout, ErrBadAuth) and the go-tpm response code; each sentinel
//     but ErrHandleEmpty carries the operator's next step (internal/hint).
//   - Never probes the lockout auth (it is dictionary-attack protected).
//   - FlushStale clears only volatile handles a killed client left on a TPM
//     without a resource manager, so a resumed run starts clean.
//   - Seal wraps data (a symmetric-key unit's device key) as a fixedTPM,
//     fixedParent object under the SRK: only that TPM can unseal it.
//   - The DPS challenge (dps.go) is built in software exactly as the service
//     builds it (credential to the EK for the SRK's name, HMAC key duplicated
//     to the SRK) and answered on the TPM exactly as the device SDKs answer
//     it; the key it persists for the test is removed again, and a key found
//     at 0x81000100 is never touched.
package tpmops
