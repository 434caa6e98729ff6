package flash

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/factory-id/station/internal/hint"
)

// MaxFirmwareSize bounds a firmware image read into memory.
const MaxFirmwareSize = 256 << 20

// Firmware is a release image, read once into memory and hashed. Targets
// write these bytes (never the file again), so the image that was checked
// is the image that is written.
type Firmware struct {
	Path   string
	Data   []byte
	SHA256 string // hex
}

// LoadFirmware reads the image at path once, hashes it and returns
// ErrFirmwareMismatch unless the hash equals wantSHA256 (the release's
// published firmware.sha256, hex, case-insensitive).
func LoadFirmware(path, wantSHA256 string) (*Firmware, error) {
	want, err := hex.DecodeString(strings.TrimSpace(wantSHA256))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("firmware.sha256 %q is not a SHA-256 in hex: %w", wantSHA256, ErrFirmwareMismatch)
	}
	data, err := readFileFlags(path, MaxFirmwareSize, 0)
	if err != nil {
		return nil, fmt.Errorf("reading firmware image: %w", err)
	}
	got := sha256.Sum256(data)
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return nil, &firmwareError{path: path, got: hex.EncodeToString(got[:]), want: hex.EncodeToString(want)}
	}
	return &Firmware{Path: path, Data: data, SHA256: hex.EncodeToString(got[:])}, nil
}

type firmwareError struct{ path, got, want string }

func (e *firmwareError) Error() string {
	return fmt.Sprintf("firmware image %s has SHA-256 %s, the release's is %s: %v", e.path, e.got, e.want, ErrFirmwareMismatch)
}
func (e *firmwareError) Unwrap() error { return errFirmwareHint }

var errFirmwareHint = hint.Wrap(ErrFirmwareMismatch,
	"use the released image, or set firmware.sha256 to the published hash of this release")
