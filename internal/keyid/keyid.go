// Package keyid names a station's public key the one way station prints it:
// the hex SHA-256 of its PKIX (SubjectPublicKeyInfo) DER. The enrollment
// manifest's key_id, the credential bundle's signer key ID (the same bytes)
// and the key_id of the audit commands' JSON documents all come from here,
// so an auditor can match them by eye or with jq.
//
// It depends on the standard library only: the offline audit verifier,
// built with CGO_ENABLED=0, imports it.
package keyid

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
)

// Of is the hex SHA-256 of pub's PKIX DER.
func Of(pub crypto.PublicKey) (string, error) {
	sum, err := Sum(pub)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum), nil
}

// Sum is the SHA-256 of pub's PKIX DER (the credential bundle's signer key
// ID is these bytes).
func Sum(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:], nil
}
