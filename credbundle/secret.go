package credbundle

import "fmt"

// Secret is key material carried in a bundle (a sealed key blob, a clear
// symmetric key). It prints, formats and marshals as a redaction marker, so
// a Bundle passed to a logger, fmt or encoding/json never shows it. Only the
// bundle encodings themselves (the device's credential store) hold the bytes.
type Secret []byte

// Redacted is what a Secret prints as in JSON and text.
const Redacted = "[redacted]"

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
	return []byte(`"` + Redacted + `"`), nil
}

// MarshalText writes a redaction marker, never the bytes.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
