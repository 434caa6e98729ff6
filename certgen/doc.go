// Package certgen is the CA side of the station: the offline PKI ceremony
// (root, factory intermediate, production-line intermediate) and the
// issuance of device certificates by the line intermediate, under a policy
// checked before anything is signed.
//
// # Keys
//
// CA keys live behind go.step.sm/crypto's kms: a pkcs11: URI names a key
// generated inside a PKCS#11 token (SoftHSM2 in tests; non-extractable, the
// station only ever holds a handle); the default is a software key written
// as PKCS#8 encrypted PEM, mode 0600 (PBES2 with PBKDF2-HMAC-SHA256, 600,000
// iterations and a 16-byte salt, AES-256-CBC: what pemutil writes with
// WithPKCS8; openssl reads it). A plain path must hold an encrypted key;
// softkms:path=F opens an unencrypted one on purpose. A pkcs11: URI needs
// both id= and object=; give the PIN with pin-source=FILE (pin-value= works
// but every URI the package prints or returns in an error is redacted with
// RedactURI). Existing files and token keys are never replaced unless the
// caller asks (files only: a token key is never deleted).
//
// # Certificates
//
// NewRoot self-signs; NewIntermediate signs a CA below a parent that must be
// a CA with keyCertSign, whose key must match, whose path length must allow
// one more level, and which the new CA must not outlive. CAs carry SKI/AKI,
// keyCertSign|cRLSign|digitalSignature, pathLen as asked and optional
// critical name constraints.
//
// # Issuance policy (Issuer.Issue)
//
// Checked in this order, each failure a refusal wrapping ErrPolicy (or
// ErrIssuer when the issuer itself is at fault) with a message saying what
// to do: the CSR's signature verifies and its key is ECDSA P-256/P-384 or
// RSA >= 2048; the registration ID passes DPS's rules for X.509
// (regid.Validate: lowercase alphanumerics and . _ : -, at most 64
// characters: it becomes the CN); the
// unit serial is set and the SAN URI template contains {serial}; the issuer
// is a CA with keyCertSign and verifies through the chain to the pinned root
// now; no certificate of the chain expires before now+warehouse (refused),
// and the leaf's NotAfter = now+warehouse+validity is clipped to the chain's
// first expiry; the issuance ceiling (pki.max_issued) is not reached; the
// 128-bit random serial is not in the station database (SerialTaken; a few
// fresh draws, then a refusal). The leaf carries CN = registration ID, a URI
// SAN binding it to the unit (urn:station:serial:SN by default), clientAuth,
// digitalSignature, CA:FALSE, SKI and AKI. After signing it must verify up to
// the root for clientAuth (name constraints included), or it is discarded.
//
// Registration IDs and symmetric device keys are enroll's (DPS identity).
// certgen knows nothing of cobra, bbolt, TPMs or DPS exports (it imports
// only the leaf enroll/regid): callers pass a crypto.Signer for the device
// key and a SerialTaken func for the database.
package certgen
