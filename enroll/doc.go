// Package enroll turns the station's unit records into what Azure IoT Hub
// DPS accepts, and checks and combines such exports offline.
//
// # Identities
//
// identity.go is the one home of DPS identity: the attestation types
// (AttestTPM, AttestX509, AttestSymmetricKey, as dps.attestation and
// store.Unit spell them), RegistrationID (what the DPS device SDKs derive
// from the EK), RegistrationIDFor and CheckRegistrationPattern (the ID from
// the EK or from a pattern with {serial}), DeviceKey and LoadGroupKey (a
// symmetric-key unit's key, HMAC-SHA256(groupKey, registrationId), never the
// group key itself) and the SAS helpers; test vectors in identity_test.go.
// The leaf package enroll/regid holds the two rules the packages below
// enroll need: a valid registration ID (regid.Validate) and how DPS compares
// two (regid.Key, case-insensitively).
//
// # Enrollment JSON
//
// IndividualEnrollment, EnrollmentGroup and BulkOperation follow the DPS
// service schema (service.json, api-version 2021-10-01) field for field:
// registrationId, deviceId, attestation {type tpm|x509|symmetricKey},
// tpm.endorsementKey / storageRootKey (base64 TPM2B_PUBLIC, exactly the
// bytes the unit's SDK sends), x509.clientCertificates.primary.certificate
// (the leaf PEM) or signingCertificates (a group's CA PEM), capabilities
// .iotEdge, iotHubs, allocationPolicy, initialTwin.tags (serial always;
// line, factory, firmwareVersion from the config), provisioningStatus
// (always explicit). Revoked units are written provisioningStatus
// "disabled": in DPS an individual enrollment beats a group and a disabled
// entry blocks the device.
//
// Symmetric-key units are a special case. An individual symmetricKey
// enrollment without keys makes DPS generate keys the unit does not have,
// and that enrollment would beat the group: the unit would be locked out. So
// an enabled symmetric-key unit gets an individual enrollment only when the
// export may carry secrets (its derived key, DeviceKey(groupKey,
// registrationId), as primary and secondary key); otherwise its registration
// ID is listed in registration-ids.txt and it registers through its group. A
// revoked one always gets a disabled enrollment (no key needed).
//
// # Export folders
//
// Export walks the units with a bbolt cursor and writes as it goes (memory
// stays flat): dps-bulk cuts the enrollments into NNNN.json operations of at
// most 10, creates first, then updates; dps-individual writes one
// <registrationId>.json per unit; dps-group writes <enrollmentGroupId>.json
// for the line intermediate's group and a disabled group for every revoked
// intermediate (group ID "ca-" + first 16 bytes of the CA's SHA-256, so the
// disabled group replaces the enabled one). csv writes one file.
//
// Every JSON file is encoded by Marshal (two-space indent, sorted map keys,
// no HTML escaping, no timestamps): the same records give the same bytes.
// An export is built in a temporary sibling folder and moved into place
// whole by Result.Install.
//
// Bookkeeping (bucket "enroll-exported", per format and serial or group ID:
// the status, the SHA-256 of the enrollment last exported and its
// registration ID) makes re-exports incremental: with OnlyNew only
// enrollments that changed are written, and a unit already exported that
// changed or is now disabled goes out as mode "update"; the rest as
// "create". Export needs only a read-only transaction: the changes are
// spooled to a temporary file, and Result.Record applies them in a short
// writable transaction (where the caller also appends its audit record and
// calls Install), failing with ErrConcurrentExport if another export
// recorded in between. So writing thousands of files never holds the
// database's write lock.
//
// # Manifest and signature
//
// A folder export holds manifest.json (format, station ID, key ID, as_of,
// counts, and every file's name, size, SHA-256, bulk mode and enrollment
// count) and manifest.sig, a JSON object {alg, key_id, signature} whose
// signature covers the bytes "station enrollment export manifest v1\n"
// followed by the exact bytes of manifest.json: Ed25519 over the message,
// ECDSA P-256/P-384 (ASN.1) or RSA-PSS over its SHA-256. key_id is the hex
// SHA-256 of the signer's PKIX public key. as_of is the newest
// provisioning or revocation time among the exported records, never the
// clock, so a re-export of the same input is byte-identical (the signature
// too, for Ed25519 and in-memory ECDSA keys, which sign deterministically).
//
// VerifyExport trusts only the public key it is given (a key inside the
// export would prove nothing): it checks the signature, then each file's
// size and hash, that no listed file is missing and no unlisted file was
// added, and that each bulk operation holds the mode and count the manifest
// says (1 to 10). Failures are *VerifyError wrapping ErrSignature or
// ErrTampered.
//
// # Secrets
//
// With Profile.GroupKey set (--include-secrets), Options.EncryptTo is
// required: every enrollment file is then a compact JWE (ECDH-ES+A256KW for
// an EC key, RSA-OAEP-256 for RSA, content A256GCM) named *.json.jwe, mode
// 0600, in a 0700 folder; the manifest hashes the JWE bytes. Decrypt with
// the private key (Decrypt, or `step crypto jwe decrypt`). JWE encryption is
// randomised, so secret exports are not byte-identical across runs. The group
// key and derived keys are never stored or logged.
//
// # Revocation
//
// RevokeUnit marks a unit revoked. RevokeCA records an intermediate revoked
// (store.RevokeCA, plus its DER in bucket "enroll-revoked-ca-certs" for the
// disabled group) and revokes every unit under it (its recorded chain holds
// the CA, or its leaf is signed by it), since an enabled individual
// enrollment would beat the disabled group. Revoking again keeps the first
// revocation and catches units issued under the CA since.
//
// # Checks on the records
//
// An enrollment is refused (ErrIncomplete, naming the unit) when DPS would
// never match it: an EK or SRK that is not a TPM2B_PUBLIC (size prefix), an
// EK whose recorded SHA-256 differs, a registration ID other than the one
// the SDK derives from the EK, an X.509 leaf whose CN is not the
// registration ID. Two units with one registration ID in a dps-individual
// export stop it (ErrDuplicates).
//
// # Merge
//
// Merge verifies exports from many stations, each against one of the
// trusted station keys (chosen by key ID), reports registration IDs, EKs,
// serials and leaf certificates seen at more than one station (clones), and
// writes one combined dps-bulk export with duplicates.json, signed by the
// merging station. Enabled enrollments involved in a duplicate are left out;
// disabled ones are kept. Exports of one station are layered by as_of, so a
// later delta supersedes an earlier export; a station is bound to its key
// (one station ID, one key), so no station can pose as another to pass its
// clones off as the other's updates.
//
// enroll depends on store, enroll/regid and bbolt, never on audit, station
// or cobra.
package enroll
