// Package audit is station's tamper-evident audit trail: how every unit's
// identity was installed, in a form an auditor can check without trusting
// the station.
//
// # What it guarantees
//
// Given the station's public key (obtained out of band) and the log or an
// export of it, Verify and VerifyExport detect any modified, deleted,
// inserted, reordered or truncated record that a signed checkpoint commits
// to, and name the first bad sequence number in a *VerifyError (which wraps
// ErrIntegrity). Truncation back to an earlier signed state, or a history
// rewritten by someone holding the key, is caught by an anchor: a checkpoint
// the auditor kept from earlier (VerifyExport/Verify with anchor): the log
// must still extend it. ReadAnchor reads one from an export, a unit proof or
// a witness folder (Log.SetWitness), which keeps the latest checkpoint
// outside the database. docs/AUDIT.md says what holds against whom.
//
// The station never signs over a log it has not checked: before Append signs
// (and in Log.Check, Export and Proof) the stored log must be the one the
// latest signed checkpoint signs, and the new tree must extend it (a
// consistency proof from the stored hashes); otherwise nothing is signed or
// deleted and the caller gets a *VerifyError.
//
// Records are written by Append inside the caller's bbolt transaction,
// together with their Merkle tree hashes and a signed checkpoint of the new
// tree, so a unit's state change and its records commit atomically and
// every committed record is signed; a process killed at any instant leaves
// a log that verifies. A record no checkpoint covers is an integrity
// violation. bbolt serializes writers, so concurrent fixtures append without
// gaps. Verification streams (bbolt cursors, buffered file reads) with
// O(log n) memory.
//
// The package imports neither go-tpm nor cgo code: the offline verifier
// builds with CGO_ENABLED=0. It takes the station key as a crypto.Signer
// (Ed25519, or ECDSA P-256 as a PKCS#11 HSM provides); loading kms URIs is
// the caller's business.
//
// No secret belongs in a record. Append refuses payloads whose keys name
// secrets (passwords, auths, private or symmetric keys, tokens) or that hold
// a private key PEM (ErrSecret); that is a guard against mistakes, the rule
// is the caller's.
//
// # Records
//
// A record's canonical bytes (Record.Bytes, accepted back only by Parse)
// are one line of JSON with fixed field order and no whitespace:
//
//	{"seq":N,"time":"2006-01-02T15:04:05.000000000Z","station":S,"operator":S,"serial":S,"event":S,"version":S,"payload":P,"prev":"H"}
//
// seq counts from 1; time is UTC with nine fraction digits; strings escape
// only '"', '\\' and control characters (\n, \r, \t, else \u00xx); P is
// compact JSON; H is 64 lower-case hex digits. Those bytes are what is
// stored, hashed and exported (records.jsonl holds them one per line). A
// record's hash is its RFC 6962 leaf hash, SHA-256(0x00 || bytes); prev is
// the previous record's hash (32 zero bytes for record 1), so the records
// form a hash chain and are also the leaves (leaf index seq-1) of an
// RFC 6962 Merkle tree kept with golang.org/x/mod/sumdb/tlog's stored-hash
// layout.
//
// # Checkpoints
//
// A checkpoint is the c2sp.org/tlog-checkpoint text
//
//	station/<station id>
//	<size>
//	<base64 root hash>
//
// signed in the c2sp.org/signed-note format under the key name
// "station/<station id>" (golang.org/x/mod/sumdb/note signs and opens it).
// Ed25519 keys use signature type 0x01, key ID SHA-256(name || 0x0A || 0x01
// || public key)[:4], exactly as sumdb/note. ECDSA P-256 keys use type 0x02:
// the signature is ASN.1 DER ECDSA over SHA-256(note text) and the key ID is
// SHA-256(DER SubjectPublicKeyInfo)[:4], as c2sp.org/signed-note assigns to
// 0x02. Append signs one for every record. A checkpoint replaces the
// previous one when both sizes fall in the same CheckpointWindow of records
// and the older is not pinned by an export: the newer was proven to commit
// to all the older did, and keeping one per window bounds verification cost
// (signature checks) at about one per thousand records.
//
// # Exports and proofs
//
// Export writes records.jsonl (or records.csv), checkpoints.jsonl,
// checkpoint (the export's own checkpoint, to keep as a later anchor),
// station.pub.pem (informational: VerifyExport never reads a key from the
// export) and a README.md for the auditor, atomically: into a temporary
// folder, verified, then recorded, pinned and renamed into place in one
// transaction. Proof writes one unit's records
// with RFC 6962 inclusion proofs in a signed checkpoint; VerifyProof checks
// it offline.
package audit
