package flash

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; cmd maps them to
// exit codes (the table in cmd/errors.go).
var (
	// ErrFirmwareMismatch: the firmware image's SHA-256 is not the
	// published firmware.sha256 (policy, exit 3). Nothing was written.
	ErrFirmwareMismatch = errors.New("firmware image does not match firmware.sha256")

	// ErrReadback: what the target holds after writing (or at QA verify)
	// differs from what was meant to be there (exit 1).
	ErrReadback = errors.New("flash read-back differs")

	// ErrOtherUnit: the target already holds another unit's bundle and the
	// job is not forced (policy, exit 3).
	ErrOtherUnit = errors.New("flash target holds another unit's bundle")

	// ErrTool: the external flashing tool failed, timed out or could not be
	// started, after all its retries (exit 1).
	ErrTool = errors.New("flashing tool failed")

	// ErrUnsafeInput: unit data (a serial, a path built from it) that could
	// escape its place in a path or an argument list (exit 1; a bad serial
	// is refused before any flash as station.ErrBadSerial, exit 2).
	ErrUnsafeInput = errors.New("unsafe unit data")

	// ErrNVTooLarge: the certificate does not fit the TPM's NV index limit
	// (exit 1).
	ErrNVTooLarge = errors.New("certificate larger than the TPM's NV index limit")

	// ErrNoReadback: the target has no way to read back (an exec tool with
	// no readback template); QA verify reports it as a failed check.
	ErrNoReadback = errors.New("target has no read-back configured")
)
