package flash

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// Secret is key material carried in a bundle (a sealed key blob, a clear
// symmetric key). It prints, formats and marshals as a redaction marker, so
// a Bundle passed to a logger, fmt or encoding/json never shows it. Only the
// bundle encodings themselves (the device's credential store) hold the bytes.
type Secret []byte

const redacted = "[redacted]"

// String returns a redaction marker.
func (s Secret) String() string { return fmt.Sprintf("[redacted %d bytes]", len(s)) }

// GoString returns a redaction marker (for %#v).
func (s Secret) GoString() string { return s.String() }

// Format redacts under every verb (%x and %s included).
func (s Secret) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// MarshalJSON writes a redaction marker, never the bytes.
func (s Secret) MarshalJSON() ([]byte, error) {
	if len(s) == 0 {
		return []byte(`""`), nil
	}
	return []byte(`"` + redacted + `"`), nil
}

// MarshalText writes a redaction marker, never the bytes.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// redactor removes every secret from text that leaves the package for a
// log or an audit record (a tool's captured output): the raw bytes and
// their hex and base64 spellings.
type redactor [][]byte

func newRedactor(secrets ...Secret) redactor {
	var r redactor
	for _, s := range secrets {
		if len(s) < 4 {
			continue
		}
		r = append(r, []byte(s),
			[]byte(hex.EncodeToString(s)),
			[]byte(fmt.Sprintf("%X", []byte(s))),
			[]byte(base64.StdEncoding.EncodeToString(s)),
			[]byte(base64.RawStdEncoding.EncodeToString(s)),
			[]byte(base64.URLEncoding.EncodeToString(s)),
			[]byte(base64.RawURLEncoding.EncodeToString(s)))
	}
	return r
}

func (r redactor) apply(b []byte) []byte {
	for _, s := range r {
		b = bytes.ReplaceAll(b, s, []byte(redacted))
	}
	return b
}
