// Package regid holds the two rules about a DPS registration ID that the
// packages below enroll need: what a valid ID looks like (Validate) and how
// DPS compares two IDs (Key). Everything else about DPS identity (IDs
// derived from an EK or a pattern, device keys, attestation types, SAS
// tokens) is in enroll; this leaf exists only because store and certgen sit
// below enroll (enroll imports store) and must not import it.
//
// It imports only the standard library.
package regid

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// MaxX509 is the longest registration ID an X.509 unit can have: the ID is
// the certificate's subject CN.
const MaxX509 = 64

var re = regexp.MustCompile(`^[a-z0-9]([a-z0-9._:-]{0,126}[a-z0-9])?$`)

// ErrInvalid means a registration ID breaks DPS's rules.
var ErrInvalid = errors.New("invalid registration ID")

// Validate applies DPS's conservative rule (lowercase letters, digits and
// . _ : -, not first or last, at most 128 characters); with x509 set the ID
// must also fit a certificate's subject CN (MaxX509). Errors wrap ErrInvalid.
func Validate(id string, x509 bool) error {
	if !re.MatchString(id) {
		return fmt.Errorf("%w %q: lowercase letters, digits and . _ : - (not first or last), at most 128", ErrInvalid, id)
	}
	if x509 && len(id) > MaxX509 {
		return fmt.Errorf("%w %q: %d characters, but an X.509 registration ID is the certificate CN (at most %d)", ErrInvalid, id, len(id), MaxX509)
	}
	return nil
}

// Key is the form in which DPS compares registration IDs: without regard
// to case, so "CASE-A" and "case-a" are one ID. Two IDs name one device in
// DPS exactly when their keys are equal.
func Key(id string) string { return strings.ToLower(id) }
