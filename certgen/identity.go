package certgen

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/factory-id/station/enroll"
)

// Attestation types (dps.attestation).
const (
	AttestTPM          = "tpm"
	AttestX509         = "x509"
	AttestSymmetricKey = "symmetric-key"
)

// ErrGroupKey means the symmetric-key group key cannot be loaded or is
// unfit (a configuration problem). Its messages never contain key material.
var ErrGroupKey = errors.New("group key")

// Group key sizes DPS accepts for a symmetric key (16 to 64 bytes).
const (
	MinGroupKeyLen = 16
	MaxGroupKeyLen = 64
)

// LoadGroupKey reads the symmetric-key enrollment group's primary key from
// "env:NAME" (the variable holds the base64 key) or from a file holding the
// base64 key. The key is returned to derive device keys and is never stored.
func LoadGroupKey(ref string, getenv func(string) string) ([]byte, error) {
	var text, where string
	switch {
	case ref == "":
		return nil, fmt.Errorf("%w: not configured (dps.group_key: a file, or env:NAME)", ErrGroupKey)
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		where = "$" + name
		if name == "" || getenv == nil {
			return nil, fmt.Errorf("%w: %q names no variable", ErrGroupKey, ref)
		}
		text = getenv(name)
		if text == "" {
			return nil, fmt.Errorf("%w: %s is not set", ErrGroupKey, where)
		}
	default:
		where = ref
		b, err := os.ReadFile(ref)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrGroupKey, err)
		}
		text = string(b)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not hold base64 (the key as the DPS portal shows it)", ErrGroupKey, where)
	}
	if len(key) < MinGroupKeyLen || len(key) > MaxGroupKeyLen {
		clear(key)
		return nil, fmt.Errorf("%w: %s holds %d bytes; DPS group keys are %d to %d bytes", ErrGroupKey, where, len(key), MinGroupKeyLen, MaxGroupKeyLen)
	}
	return key, nil
}

// CheckRegistrationPattern refuses an x509 or symmetric-key registration ID
// pattern that would give every unit the same ID (and, for symmetric-key,
// the same derived key): it must contain {serial}.
func CheckRegistrationPattern(attestation, pattern string) error {
	switch attestation {
	case AttestTPM:
		return nil
	case AttestX509, AttestSymmetricKey:
		if !strings.Contains(pattern, "{serial}") {
			return policyf("registration ID pattern %q has no {serial}: every unit would share one ID%s",
				pattern, map[bool]string{true: " and one device key", false: ""}[attestation == AttestSymmetricKey])
		}
		return nil
	}
	return policyf("attestation %q: want tpm, x509 or symmetric-key", attestation)
}

// RegistrationIDFor gives a unit's registration ID: with tpm attestation the
// ID the DPS SDKs derive from the EK's TPM2B_PUBLIC; with x509 or
// symmetric-key the pattern filled from vars ({serial}, {factory}, {line}...).
// The ID always becomes the device certificate's CN, so it must pass DPS's
// rules for X.509 (at most 64 characters). Refusals wrap ErrPolicy.
func RegistrationIDFor(attestation, pattern string, vars map[string]string, ekTPM2BPublic []byte) (string, error) {
	if err := CheckRegistrationPattern(attestation, pattern); err != nil {
		return "", err
	}
	var id string
	var err error
	if attestation == AttestTPM {
		if len(ekTPM2BPublic) == 0 {
			return "", policyf("tpm attestation needs the unit's EK to derive its registration ID")
		}
		id = enroll.RegistrationID(ekTPM2BPublic)
		err = enroll.ValidateRegistrationID(id, true)
	} else {
		if vars["serial"] == "" {
			return "", policyf("no unit serial to fill the registration ID pattern %q", pattern)
		}
		id, err = enroll.ExpandPattern(pattern, vars, true)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	return id, nil
}

// DeviceKey derives a unit's symmetric key from the group key:
// HMAC-SHA256(groupKey, registrationID), as DPS computes it. It refuses a
// group key outside DPS's sizes and a result equal to the group key (a
// device must never hold the group key itself). The caller puts the key in
// the credential bundle (sealed under the unit's SRK when it has a TPM) and
// never stores it.
func DeviceKey(groupKey []byte, registrationID string) ([]byte, error) {
	if len(groupKey) < MinGroupKeyLen || len(groupKey) > MaxGroupKeyLen {
		return nil, fmt.Errorf("%w: %d bytes; DPS group keys are %d to %d bytes", ErrGroupKey, len(groupKey), MinGroupKeyLen, MaxGroupKeyLen)
	}
	if err := enroll.ValidateRegistrationID(registrationID, false); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	k := enroll.DeriveDeviceKey(groupKey, registrationID)
	if err := CheckDeviceKey(groupKey, k); err != nil {
		return nil, err
	}
	return k, nil
}

// CheckDeviceKey refuses a device key that is the group key: a unit holding
// the group key could derive every other unit's key.
func CheckDeviceKey(groupKey, deviceKey []byte) error {
	if len(deviceKey) == 0 {
		return policyf("empty device key")
	}
	if hmac.Equal(groupKey, deviceKey) {
		return policyf("the device key is the group key itself: every unit could impersonate every other; derive it with HMAC-SHA256(groupKey, registrationId)")
	}
	return nil
}
