// Package flash puts a unit's firmware and credentials where the unit will
// find them, and proves they got there.
//
// # The bundle
//
// The credential bundle a unit gets is package credbundle's format (its
// fields, signature, single-file image and folder forms: docs/BUNDLE.md);
// this package writes both forms to the unit and reads them back.
// ReadFolder reads a folder form from the medium. Key material is typed
// credbundle.Secret: Result.Detail, errors and the captured output of
// flashing tools never hold it: tool output is redacted (raw, hex and
// base64 spellings) before it is kept.
//
// # Firmware
//
// LoadFirmware reads the image once, hashes it and refuses it
// (ErrFirmwareMismatch) unless the hash is the release's published
// firmware.sha256. Targets write those bytes from memory, never the file
// again, so the image checked is the image written; a job whose bundle names
// another firmware hash is refused before anything is written.
//
// # Targets
//
// Open opens a comma-separated list of targets (flash.target or --flash;
// configs.Flash.ParseTargets is the grammar, which config loading and
// batch rows check with the same code):
//
//   - dir:PATH writes firmware.bin, station-bundle.bin and the folder
//     station-bundle/ under PATH, each file through a temporary name, fsync,
//     rename and folder fsync; then reads every file back (after dropping the
//     page cache, best effort) and compares it byte for byte. PATH must exist
//     (an unmounted unit must not become a write to the station's disk),
//     unless it holds {serial}, in which case the last level is created.
//     Symbolic links are refused or replaced, never followed.
//   - exec:NAME[@PORT] runs flash.tools.NAME: argument templates expanded
//     one argv entry each ({firmware}, {bundle}, {bundle_file}, {serial},
//     {port}, {registration_id}, {firmware_sha256}, {firmware_size},
//     {bundle_size}), no shell ever; the tool reads a private 0700 staging
//     copy; it runs in its own process group, killed with every child at
//     its timeout (flash.tools.NAME.timeout, default 5 min); failures are
//     retried flash.tools.NAME.retries times (at most 10), waiting 1 s, 2 s,
//     4 s... (capped at 10 s) between attempts; a read-back that differs is
//     not retried but fails the unit; output is
//     captured bounded and redacted into Result.Detail; STATION_* variables
//     are kept out of its environment. The optional readback template
//     ({readback_bundle}, {readback_firmware}, or the bundle on stdout) is
//     compared byte for byte; without one, the record says the exit status
//     was trusted.
//   - tpm-nv writes the device certificate into the owner NV index
//     flash.nv_index (default 0x01500010) of the unit's TPM: only the owner
//     may write it (OWNERWRITE, no AUTH/POLICY/PP write), it is write-locked
//     after writing (WRITEDEFINE + NV_WriteLock: only undefining it, with
//     owner auth, frees it), anyone reads it (AUTHREAD, empty index auth)
//     or the owner (OWNERREAD), NO_DA; its size is checked against
//     TPM_PT_NV_INDEX_MAX first; it is read back through NV_Read and its
//     public area checked. A *tpmops.TPM is an NVDevice.
//
// A target list is split on commas, so a dir: path cannot hold one.
// HeldBundle reads the bundle a unit holds on a list's dir: targets.
//
// Every Write refuses a target that already holds another unit's bundle
// (ErrOtherUnit) unless Job.Force. Serials are checked
// (credbundle.ValidSerial) wherever they could reach a path or an argv
// (ErrUnsafeInput).
//
// # Errors and exit codes
//
// cmd/errors.go maps the sentinels (errors.go) to exit codes: the firmware
// or another unit's bundle refused is policy (3); everything else fails the
// unit at the flash step (1), and re-running provision retries it; a bundle
// on a target that does not parse or verify wraps credbundle.ErrBundle or
// credbundle.ErrSignature (1). A bad
// target list or tool definition is a *configs.Error (2).
package flash
