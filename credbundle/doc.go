// Package credbundle is the station's credential bundle format: what a
// unit's DPS client needs, signed by the station (docs/BUNDLE.md). It
// encodes, parses, signs and verifies bundles; it does no file or TPM I/O
// (package flash writes bundles to units and reads them back).
//
// A Bundle carries what the device's DPS client needs (ID scope, global
// endpoint, registration ID, attestation type, the persistent handle of the
// device key in its TPM), the device certificate and its chain up to (not
// including) the root, the SHA-256 of the firmware the unit must run, and,
// for symmetric-key units, the per-device key: sealed under the unit's SRK
// when it has a TPM (SealedKey), in clear only when it has none
// (SymmetricKey), and, in version 2, the device key as a TSS2 private key
// file (TPMKey, package tsskey) for the device's OpenSSL provider and
// PKCS#11 module, with a derived device.json naming what the device's
// software needs (DeviceManifest). Sign computes a SHA-256 digest over a
// canonical encoding of every field and signs it with the station key
// (Ed25519 or ECDSA P-256, any crypto.Signer); VerifyBundle and
// Bundle.Verify tell a station-made bundle from an edited one or one signed
// by another key. The bundle has two forms with the same digest: a
// single-file image (MarshalBinary, ParseImage; one TLV reader walks its
// records) for tools that write one blob, and a folder (Folder,
// ParseFolder: file name -> contents). docs/BUNDLE.md specifies both,
// versions 1 and 2: a bundle is written as version 1 unless it carries the
// TPM key file, and both are read. docs/DEVICE.md says what the device
// finds where.
//
// Key material is typed Secret: it never prints, formats or marshals (fmt,
// encoding/json, log/slog all see "[redacted]"); only the bundle encodings
// (the device's credential store) hold the bytes.
//
// A malformed or inconsistent bundle wraps ErrBundle; a digest or signature
// that does not verify under the station key wraps ErrSignature (integrity,
// exit 4 for a bundle checked on its own).
package credbundle
