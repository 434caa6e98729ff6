package flash

import (
	"context"
	"crypto"
	"fmt"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/hint"
)

// Job is one unit's flash: its firmware and its signed bundle.
type Job struct {
	Serial   string
	Firmware *Firmware          // checked against firmware.sha256 (LoadFirmware)
	Bundle   *credbundle.Bundle // signed, or credbundle.Expected for ReadBack
	// Force lets a target that holds another unit's bundle be overwritten.
	Force bool
	// OwnerAuth (secret) is the unit TPM's owner authorization, for tpm-nv
	// (empty under the default owner_auth: empty policy).
	OwnerAuth credbundle.Secret
	// StationKey, when set, makes ReadBack also verify the signature of the
	// bundle found on the target.
	StationKey crypto.PublicKey
	// ImageSize, for ReadBack of an unsigned (credbundle.Expected) bundle,
	// is the recorded size of its single-file image (Result.Detail's
	// "image_size"), for exec readback templates that use {bundle_size};
	// 0 if unknown.
	ImageSize int
}

// Result is what a target reports for the unit record and the audit trail.
// Detail holds digests, sizes, the NV index, the tool's attempts and
// bounded, redacted output: never key material, never the bundle itself.
type Result struct {
	Target string
	Detail map[string]string
}

// Target is one place a unit's firmware and credentials go.
type Target interface {
	// Name is the target as the operator wrote it ("dir:/mnt/unit", "exec:esp", "tpm-nv").
	Name() string
	// Write writes the job and reads it back; a read-back that differs
	// returns ErrReadback.
	Write(ctx context.Context, j Job) (Result, error)
	// ReadBack checks what the target holds against j (QA verify): the
	// bundle's digest (j.Bundle.Digest), the serial and the firmware hash
	// (j.Firmware.SHA256 when set, else the bundle's).
	ReadBack(ctx context.Context, j Job) error
}

// safeSerial returns ErrUnsafeInput for a serial that could escape a path
// component or pose as a tool option (credbundle.ValidSerial).
func safeSerial(s string) error {
	if err := credbundle.ValidSerial(s); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafeInput, err)
	}
	return nil
}

// Open opens a comma-separated target list ("dir:/mnt/unit,tpm-nv"; the
// grammar is configs.Flash.ParseTargets). cfg supplies the exec tools and
// the NV index; nv is the unit's TPM (needed only by tpm-nv). A bad list is
// a *configs.Error (exit 2).
func Open(spec string, cfg configs.Flash, nv NVDevice) ([]Target, error) {
	parsed, err := cfg.ParseTargets(spec)
	if err != nil {
		return nil, err
	}
	ts := make([]Target, 0, len(parsed))
	for _, p := range parsed {
		switch p.Kind {
		case configs.TargetDir:
			ts = append(ts, &dirTarget{spec: p.Spec, path: p.Path})
		case configs.TargetExec:
			tool := cfg.Tools[p.Tool]
			if p.HasPort {
				tool.Port = p.Port
			}
			e, err := newExecTarget(p.Spec, p.Tool, tool)
			if err != nil {
				return nil, err
			}
			ts = append(ts, e)
		case configs.TargetTPMNV:
			if nv == nil {
				return nil, specErr("tpm-nv needs the unit's TPM")
			}
			idx := uint32(cfg.NVIndex)
			if idx == 0 {
				idx = DefaultNVIndex
			}
			n, err := newNVTarget(nv, idx)
			if err != nil {
				return nil, err
			}
			ts = append(ts, n)
		}
	}
	return ts, nil
}

func specErr(format string, args ...any) error {
	return &configs.Error{Key: "flash.target", Err: fmt.Errorf(format, args...)}
}

// checkJob is the common validation of every target's Write.
func checkJob(j Job) error {
	if err := safeSerial(j.Serial); err != nil {
		return err
	}
	if j.Bundle == nil || len(j.Bundle.Signature) == 0 {
		return fmt.Errorf("unit %s: %w: bundle is not signed", j.Serial, credbundle.ErrSignature)
	}
	if j.Bundle.Serial != j.Serial {
		return fmt.Errorf("unit %s: %w: bundle is for unit %q", j.Serial, credbundle.ErrBundle, j.Bundle.Serial)
	}
	if j.Firmware == nil {
		return fmt.Errorf("unit %s: no firmware: %w", j.Serial, ErrFirmwareMismatch)
	}
	if j.Firmware.SHA256 != j.Bundle.FirmwareSHA256 {
		return fmt.Errorf("unit %s: bundle names firmware %s, the image is %s: %w", j.Serial, j.Bundle.FirmwareSHA256, j.Firmware.SHA256, ErrFirmwareMismatch)
	}
	return nil
}

// checkFound compares a bundle read from a target with the job (ReadBack).
func checkFound(j Job, found *credbundle.Bundle, where string) error {
	if found.Serial != j.Serial {
		return fmt.Errorf("%s holds unit %q's bundle, not %q's: %w", where, found.Serial, j.Serial, ErrReadback)
	}
	if j.Bundle != nil && len(j.Bundle.Digest) > 0 && string(found.Digest) != string(j.Bundle.Digest) {
		return fmt.Errorf("%s: bundle digest %s, expected %s: %w", where, found.DigestHex(), j.Bundle.DigestHex(), ErrReadback)
	}
	if j.StationKey != nil {
		if err := found.Verify(j.StationKey); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

// otherUnit returns ErrOtherUnit when a target holds a bundle naming
// another unit (serial, "" if none can be read) and the job is not forced.
// A bundle too damaged to name its unit is replaced.
func otherUnit(j Job, serial, where string) error {
	if serial == "" || serial == j.Serial || j.Force {
		return nil
	}
	return &otherUnitError{where: where, serial: serial, want: j.Serial}
}

type otherUnitError struct{ where, serial, want string }

func (e *otherUnitError) Error() string {
	return fmt.Sprintf("%s already holds unit %s's bundle (this is unit %s): %v", e.where, e.serial, e.want, ErrOtherUnit)
}
func (e *otherUnitError) Unwrap() error { return errOtherUnitHint }

var errOtherUnitHint = hint.Wrap(ErrOtherUnit,
	"check the fixture holds the right unit; re-run with --force to overwrite it")
