// Package station is the per-unit state machine of the manufacturing line.
//
// Provision runs the timeline on one unit — EK, SRK, device key, certificate,
// flash, ownership, record — journaling each step in the station database
// before and after it runs, in the same transaction as the step's audit
// record. A unit is therefore either fully recorded or resumable: re-running
// provision on a half-done unit checks what the TPM already holds against the
// journal and carries on; re-running it on a finished unit changes nothing.
//
// Ownership is taken last among the TPM steps, after everything that needs
// owner authorization, so a crash never leaves a TPM whose owner auth the
// station no longer knows. Each new authorization is escrowed (encrypted to
// the escrow public key) and committed before it is applied.
//
// The package never evicts a persistent object it did not create and never
// clears a TPM.
package station
