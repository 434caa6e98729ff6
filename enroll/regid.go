package enroll

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

var regIDRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9._:-]{0,126}[a-z0-9])?$`)

// ErrRegistrationID means a registration ID breaks DPS's rules.
var ErrRegistrationID = errors.New("invalid registration ID")

// RegistrationID is the ID the DPS device SDKs derive from a TPM's EK:
// SHA-256 over the EK's TPM2B_PUBLIC bytes, base32 (RFC 4648), lowercase,
// without padding: 52 characters of [a-z2-7].
func RegistrationID(ekTPM2BPublic []byte) string {
	sum := sha256.Sum256(ekTPM2BPublic)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}

// ValidateRegistrationID applies DPS's conservative rule; with x509 set the
// ID must also fit a certificate's subject CN (64 characters).
func ValidateRegistrationID(id string, x509 bool) error {
	if !regIDRe.MatchString(id) {
		return fmt.Errorf("%w %q: lowercase letters, digits and . _ : - (not first or last), at most 128", ErrRegistrationID, id)
	}
	if x509 && len(id) > 64 {
		return fmt.Errorf("%w %q: %d characters, but an X.509 registration ID is the certificate CN (at most 64)", ErrRegistrationID, id, len(id))
	}
	return nil
}

// ExpandPattern fills a registration ID pattern ("{serial}", "{factory}-{serial}")
// from vars, lowercases it and validates the result.
func ExpandPattern(pattern string, vars map[string]string, x509 bool) (string, error) {
	var unknown error
	out := regexp.MustCompile(`\{[a-z_]+\}`).ReplaceAllStringFunc(pattern, func(m string) string {
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
	return out, ValidateRegistrationID(out, x509)
}

// DeriveDeviceKey is the symmetric key of one device in a symmetric-key
// enrollment group: HMAC-SHA256(groupKey, registrationID).
func DeriveDeviceKey(groupKey []byte, registrationID string) []byte {
	m := hmac.New(sha256.New, groupKey)
	m.Write([]byte(registrationID))
	return m.Sum(nil)
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
