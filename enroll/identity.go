package enroll

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/factory-id/station/enroll/regid"
)

// Attestation types: the values of dps.attestation and of store.Unit's
// Attestation.
const (
	AttestTPM          = "tpm"
	AttestX509         = "x509"
	AttestSymmetricKey = "symmetric-key"
)

// CheckAttestation refuses an attestation type station does not know.
func CheckAttestation(attestation string) error {
	switch attestation {
	case AttestTPM, AttestX509, AttestSymmetricKey:
		return nil
	}
	return fmt.Errorf("%q: want %s, %s or %s", attestation, AttestTPM, AttestX509, AttestSymmetricKey)
}

// CheckRegistrationPattern refuses an x509 or symmetric-key registration ID
// pattern that is missing or would give every unit the same ID (and, for
// symmetric-key, the same derived key): it must contain {serial}. With tpm
// attestation the ID comes from the EK and the pattern is not used.
func CheckRegistrationPattern(attestation, pattern string) error {
	if err := CheckAttestation(attestation); err != nil {
		return err
	}
	switch {
	case attestation == AttestTPM:
		return nil
	case pattern == "":
		return fmt.Errorf("a pattern such as \"{serial}\" is needed with %s attestation", attestation)
	case !strings.Contains(pattern, "{serial}"):
		return fmt.Errorf("pattern %q does not contain {serial}: every unit would get the same registration ID", pattern)
	}
	return nil
}

// RegistrationID is the ID the DPS device SDKs derive from a TPM's EK:
// SHA-256 over the EK's TPM2B_PUBLIC bytes, base32 (RFC 4648), lowercase,
// without padding: 52 characters of [a-z2-7].
func RegistrationID(ekTPM2BPublic []byte) string {
	sum := sha256.Sum256(ekTPM2BPublic)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}

// RegistrationIDFor gives a unit's registration ID: with tpm attestation the
// ID the DPS SDKs derive from the EK's TPM2B_PUBLIC; with x509 or
// symmetric-key the pattern filled from vars ({serial}, {factory}, {line},
// {station}) and lowercased. The ID always becomes the device certificate's
// CN, so it must pass DPS's rules for X.509 (regid.Validate; at most 64
// characters).
func RegistrationIDFor(attestation, pattern string, vars map[string]string, ekTPM2BPublic []byte) (string, error) {
	if err := CheckRegistrationPattern(attestation, pattern); err != nil {
		return "", err
	}
	if attestation == AttestTPM {
		if len(ekTPM2BPublic) == 0 {
			return "", errors.New("tpm attestation needs the unit's EK to derive its registration ID")
		}
		id := RegistrationID(ekTPM2BPublic)
		return id, regid.Validate(id, true)
	}
	if vars["serial"] == "" {
		return "", fmt.Errorf("no unit serial to fill the registration ID pattern %q", pattern)
	}
	return ExpandPattern(pattern, vars, true)
}

var placeholderRe = regexp.MustCompile(`\{[a-z_]+\}`)

// ExpandPattern fills a registration ID pattern ("{serial}", "{factory}-{serial}")
// from vars, lowercases it and validates the result.
func ExpandPattern(pattern string, vars map[string]string, x509 bool) (string, error) {
	var unknown error
	out := placeholderRe.ReplaceAllStringFunc(pattern, func(m string) string {
		v, ok := vars[strings.Trim(m, "{}")]
		if !ok && unknown == nil {
			unknown = fmt.Errorf("registration ID pattern %q: unknown placeholder %s", pattern, m)
		}
		return v
	})
	if unknown != nil {
		return "", unknown
	}
	out = strings.ToLower(out)
	return out, regid.Validate(out, x509)
}

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

// DeviceKey is the symmetric key of one device in a symmetric-key
// enrollment group, as DPS computes it: HMAC-SHA256(groupKey,
// registrationID). It refuses a group key outside DPS's sizes (ErrGroupKey),
// an invalid registration ID (regid.ErrInvalid) and a result equal to the
// group key (a device must never hold the group key itself). The caller puts
// the key in the credential bundle (sealed under the unit's SRK when it has
// a TPM) or an encrypted export, and never stores it.
func DeviceKey(groupKey []byte, registrationID string) ([]byte, error) {
	if len(groupKey) < MinGroupKeyLen || len(groupKey) > MaxGroupKeyLen {
		return nil, fmt.Errorf("%w: %d bytes; DPS group keys are %d to %d bytes", ErrGroupKey, len(groupKey), MinGroupKeyLen, MaxGroupKeyLen)
	}
	if err := regid.Validate(registrationID, false); err != nil {
		return nil, err
	}
	k := deriveKey(groupKey, registrationID)
	if err := checkDeviceKey(groupKey, k); err != nil {
		return nil, err
	}
	return k, nil
}

func deriveKey(groupKey []byte, registrationID string) []byte {
	m := hmac.New(sha256.New, groupKey)
	m.Write([]byte(registrationID))
	return m.Sum(nil)
}

// checkDeviceKey refuses a device key that is the group key: a unit holding
// the group key could derive every other unit's key.
func checkDeviceKey(groupKey, deviceKey []byte) error {
	if len(deviceKey) == 0 {
		return fmt.Errorf("%w: empty device key", ErrGroupKey)
	}
	if hmac.Equal(groupKey, deviceKey) {
		return fmt.Errorf("%w: the device key is the group key itself: every unit could impersonate every other; derive it with HMAC-SHA256(groupKey, registrationId)", ErrGroupKey)
	}
	return nil
}

// SASStringToSign is what a device signs to register with DPS:
// url-encode("{idScope}/registrations/{registrationId}") + "\n" + expiry.
// It returns the encoded resource URI too, which goes into the token as sr.
func SASStringToSign(idScope, registrationID string, expiry int64) (sr, toSign string) {
	sr = strings.ReplaceAll(url.QueryEscape(idScope+"/registrations/"+registrationID), "%2F", "%2f")
	return sr, sr + "\n" + strconv.FormatInt(expiry, 10)
}

// SASToken builds the DPS registration token from an HMAC-SHA256 signature
// (made by the device, in its TPM or with its derived key).
func SASToken(sr string, sig []byte, expiry int64) string {
	return fmt.Sprintf("SharedAccessSignature sr=%s&sig=%s&se=%d&skn=registration",
		sr, url.QueryEscape(base64.StdEncoding.EncodeToString(sig)), expiry)
}
