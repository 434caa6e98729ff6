package audit

import (
	"crypto"
	"encoding/base64"
	"fmt"
)

func readmeText(origin string, pub crypto.PublicKey, cp Checkpoint, format string) ([]byte, error) {
	id, err := KeyID(origin, pub)
	if err != nil {
		return nil, err
	}
	vkey, err := VerifierKey(origin, pub)
	if err != nil {
		return nil, err
	}
	records := FileRecordsJSONL
	if format == "csv" {
		records = FileRecordsCSV
	}
	return fmt.Appendf(nil, readmeTemplate, origin, cp.Size, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]),
		keyIDString(id), vkey, records), nil
}

const readmeTemplate = "# Audit trail export: `%s`\n" + `
This folder is the audit trail of a manufacturing station: how every unit's
identity (TPM keys, certificate, ownership, flash) was installed. It holds
%d records, all covered by the signed checkpoint in ` + "`checkpoint`" + `:

    size %d
    root %s (SHA-256, RFC 6962 Merkle tree hash)
    key  ID %s

## Trust nothing in this folder

` + "`station.pub.pem`" + ` is included for reference only. A key shipped with an export
proves nothing: whoever altered the records could have replaced it. Verify
with the station public key you obtained from the station operator through
another channel (` + "`station audit pubkey`" + ` on the station, at commissioning).
Its signed-note verifier key is

    %s

and must match what you hold.

Keep ` + "`checkpoint`" + ` somewhere the station cannot reach. Given to a later
verification as an anchor, it proves the log was not truncated or rewritten
since: every later export must extend it.

## Verify

On any machine (no TPM, no database needed):

    station audit verify --export THIS_FOLDER --key YOUR_COPY_OF_THE_KEY.pem [--anchor EARLIER_CHECKPOINT]

Exit code 0 means every check passed; 4 means an integrity violation, reported
with the first bad record's sequence number and the reason.

## Format (to check it with your own tools)

` + "`%s`" + ` holds the records in order, sequence numbers 1, 2, 3...
` + "```" + `
{"seq":N,"time":"2006-01-02T15:04:05.000000000Z","station":S,"operator":S,"serial":S,"event":S,"version":S,"payload":{...},"prev":"64 hex digits"}
` + "```" + `
- In ` + "`records.jsonl`" + ` each line, without its newline, is exactly the byte
  string that was hashed. Do not reformat or re-save the file (no CRLF).
  (In ` + "`records.csv`" + ` the same fields are columns; the hashed bytes are the
  line above rebuilt from them: fields in that order, strings escaping only
  '"', '\' and control characters (\n, \r, \t, else \u00xx), the payload
  column verbatim.) Open a CSV export in a spreadsheet only as text: cells
  starting with = + - @ are data, not formulas.
- A record's hash is SHA-256(0x00 || record bytes): its leaf hash in an
  RFC 6962 Merkle tree. ` + "`prev`" + ` is the hash of the record before (zeros for
  record 1), so each record commits to the whole history before it.
- ` + "`payload`" + ` is the event's details; it never holds a secret (authorization
  values and keys are escrowed encrypted elsewhere, never logged).
- ` + "`checkpoints.jsonl`" + ` lists signed checkpoints by size, one
  {"size":N,"note":"..."} per line; each note (c2sp.org/tlog-checkpoint) is
  "<origin>\n<size>\n<base64 root>\n", a blank line and a signature line
  "— <origin> <base64(4-byte key ID || signature)>" (c2sp.org/signed-note).
  Ed25519 keys: signature type 0x01, key ID = SHA-256(origin || 0x0A || 0x01 ||
  public key)[:4]. ECDSA P-256 keys: type 0x02, an ASN.1 ECDSA signature of
  SHA-256(note text), key ID = SHA-256(DER SubjectPublicKeyInfo)[:4].
  The Merkle root of the first N records must equal each checkpoint's root.

A per-unit inclusion proof (` + "`station audit proof --serial SN`" + `) shows one
device's records without the rest of the log; check it with
` + "`station audit verify --proof FILE --key KEY.pem`" + `.
`
