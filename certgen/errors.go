package certgen

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

var (
	// ErrPolicy means the issuance policy refused a request (a bad
	// registration ID, an issuer expiring too soon, a taken serial, the
	// issuance ceiling reached...). The message says what to do.
	ErrPolicy = errors.New("refused by issuance policy")

	// ErrIssuer means the issuing CA is unusable as configured: its
	// certificate is not a CA allowed to sign certificates, it does not chain
	// to the pinned root, its key does not match it, or a file cannot be read.
	ErrIssuer = errors.New("issuer unusable")

	// ErrHSM means the key store behind a kms URI (a PKCS#11 module or
	// token) could not be reached or logged into (environment, retryable).
	ErrHSM = errors.New("key store unreachable")

	// ErrExists means a CA file or key is already there and would be
	// overwritten.
	ErrExists = errors.New("already exists")

	// ErrPassword means a key password or token PIN is missing, too short or
	// wrong (not retryable: a token locks after too many wrong PINs).
	ErrPassword = errors.New("key password")

	// ErrKeyURI means a key reference is malformed (a pkcs11: URI without
	// both id= and object=, a softkms: URI naming no file...).
	ErrKeyURI = errors.New("bad key URI")
)

func policyf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrPolicy}, args...)...)
}

func issuerf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrIssuer}, args...)...)
}

// RedactURI removes a PIN given in a kms URI (pin-value=..., as a query
// or a path attribute) so the URI can be printed, logged or recorded.
func RedactURI(s string) string {
	return pinValueRe.ReplaceAllString(s, "${1}REDACTED")
}

var pinValueRe = regexp.MustCompile(`(pin-value=)[^;&?#]*`)

// redactErr returns err with any PIN of uri removed from its text. The
// library errors of the kms packages quote the URI they were given.
func redactErr(err error, uri string) error {
	if err == nil {
		return nil
	}
	pins := uriPins(uri)
	if len(pins) == 0 {
		return err
	}
	msg := err.Error()
	for _, p := range pins {
		msg = strings.ReplaceAll(msg, p, "REDACTED")
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

func uriPins(s string) []string {
	var pins []string
	_, query, _ := strings.Cut(s, "?")
	if v, err := url.ParseQuery(query); err == nil && v.Get("pin-value") != "" {
		pins = append(pins, v.Get("pin-value"))
	}
	for _, kv := range strings.Split(s, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasSuffix(k, "pin-value") && v != "" {
			v, _, _ = strings.Cut(v, "?")
			pins = append(pins, v)
		}
	}
	// The URI-escaped form appears too when a library re-encodes it.
	for _, p := range pins {
		if e := url.QueryEscape(p); e != p {
			pins = append(pins, e)
		}
	}
	return pins
}
