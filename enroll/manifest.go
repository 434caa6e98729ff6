package enroll

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/internal/keyid"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Names of the files that describe an export folder.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	// sigContext is prefixed to the manifest bytes before signing, so a
	// signature made for an export can never be replayed as another kind of
	// station signature (an audit checkpoint) made with the same key.
	sigContext = "station enrollment export manifest v1\n"
)

// Sentinel errors of verification (exit code 4 in the CLI).
var (
	// ErrSignature means manifest.sig is missing, malformed, made by another
	// key, or does not verify over manifest.json.
	ErrSignature = hint.New("export signature does not verify",
		"do not import this export: check that --key is the exporting station's key (`station audit pubkey` on it), else export again from the station")
	// ErrTampered means a file differs from what the signed manifest says.
	ErrTampered = hint.New("export does not match its signed manifest",
		"do not import this export: a file was changed, added or removed after the station signed it; export again from the station (`station enroll export`)")
	// ErrNoKey means verification was asked without a trusted key.
	ErrNoKey = errors.New("verifying an export needs the station's public key")
)

// Manifest is manifest.json: what an export folder holds.
type Manifest struct {
	Version   int    `json:"version"`
	Format    string `json:"format"`
	StationID string `json:"station_id"`
	// KeyID is the hex SHA-256 of the signer's PKIX public key.
	KeyID string `json:"key_id"`
	// AsOf is the newest unit change the export reflects (RFC 3339, UTC),
	// taken from the records, never from the clock: the same input gives
	// the same manifest.
	AsOf      string `json:"as_of,omitempty"`
	OnlyNew   bool   `json:"only_new,omitempty"`
	Encrypted bool   `json:"encrypted,omitempty"`
	Counts    Counts `json:"counts"`
	Files     []File `json:"files"`
	// Sources lists the exports a merge combined.
	Sources []Source `json:"sources,omitempty"`
}

// Counts summarises an export.
type Counts struct {
	Units    int `json:"units"`    // units considered after the filters
	Enrolled int `json:"enrolled"` // enrollments written
	Create   int `json:"create"`
	Update   int `json:"update"`
	Enabled  int `json:"enabled"`
	Disabled int `json:"disabled"`
	Groups   int `json:"groups,omitempty"`
	// ViaGroup counts symmetric-key units that register through their group
	// and have no individual enrollment here (listed in registration-ids.txt).
	ViaGroup  int `json:"via_group,omitempty"`
	Unchanged int `json:"unchanged,omitempty"` // skipped by --only-new
}

// File is one file of the export.
type File struct {
	Name        string `json:"name"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	Mode        string `json:"mode,omitempty"` // bulk operation mode
	Enrollments int    `json:"enrollments,omitempty"`
}

// Source is one export a merge read.
type Source struct {
	StationID      string `json:"station_id"`
	KeyID          string `json:"key_id"`
	ManifestSHA256 string `json:"manifest_sha256"`
	Enrollments    int    `json:"enrollments"`
}

// signature is manifest.sig.
type signature struct {
	Alg       string `json:"alg"` // ed25519 | ecdsa-sha256 | rsa-pss-sha256
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"` // base64
}

// KeyID is the hex SHA-256 of a public key's PKIX DER (keyid.Of, the key ID
// the audit commands print too).
func KeyID(pub crypto.PublicKey) (string, error) { return keyid.Of(pub) }

// ParseRecipientKeyPEM reads the key secrets are encrypted to (Encrypt)
// from a "PUBLIC KEY" (PKIX) PEM block, or takes the key of a "CERTIFICATE"
// block. The station's own public key, which verifies exports, is read by
// audit.ParsePublicKeyPEM.
func ParseRecipientKeyPEM(b []byte) (crypto.PublicKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PUBLIC KEY or CERTIFICATE PEM block")
		}
		switch blk.Type {
		case "PUBLIC KEY":
			return x509.ParsePKIXPublicKey(blk.Bytes)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, err
			}
			return c.PublicKey, nil
		}
	}
}

// SignManifest signs the exact manifest bytes and returns manifest.sig.
// Ed25519 and in-memory ECDSA keys sign deterministically (ECDSA per
// RFC 6979), so a re-export of the same input is byte-identical, signature
// included; other signers (KMS, HSM) may randomise the signature only.
func SignManifest(signer crypto.Signer, manifest []byte) ([]byte, error) {
	msg := append([]byte(sigContext), manifest...)
	sum := sha256.Sum256(msg)
	var (
		alg string
		sig []byte
		err error
	)
	switch pub := signer.Public().(type) {
	case ed25519.PublicKey:
		alg = "ed25519"
		sig, err = signer.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey:
		alg = "ecdsa-sha256"
		var r io.Reader = rand.Reader
		if _, ok := signer.(*ecdsa.PrivateKey); ok {
			r = nil // deterministic (RFC 6979)
		}
		sig, err = signer.Sign(r, sum[:], crypto.SHA256)
	case *rsa.PublicKey:
		alg = "rsa-pss-sha256"
		sig, err = signer.Sign(rand.Reader, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	default:
		return nil, fmt.Errorf("signing manifest: unsupported key type %T", pub)
	}
	if err != nil {
		return nil, fmt.Errorf("signing manifest: %w", err)
	}
	id, err := KeyID(signer.Public())
	if err != nil {
		return nil, err
	}
	return Marshal(signature{Alg: alg, KeyID: id, Signature: base64.StdEncoding.EncodeToString(sig)})
}

// VerifyManifest checks sig (manifest.sig) over the exact manifest bytes with
// pub, the only key trusted.
func VerifyManifest(pub crypto.PublicKey, manifest, sig []byte) error {
	if pub == nil {
		return ErrNoKey
	}
	var s signature
	dec := json.NewDecoder(bytes.NewReader(sig))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("%w: %s is not a signature: %v", ErrSignature, SignatureFile, err)
	}
	raw, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", ErrSignature)
	}
	id, err := KeyID(pub)
	if err != nil {
		return err
	}
	if s.KeyID != id {
		return fmt.Errorf("%w: signed by key %.16s…, not by the trusted key %.16s…", ErrSignature, s.KeyID, id)
	}
	msg := append([]byte(sigContext), manifest...)
	sum := sha256.Sum256(msg)
	ok := false
	switch k := pub.(type) {
	case ed25519.PublicKey:
		ok = s.Alg == "ed25519" && ed25519.Verify(k, msg, raw)
	case *ecdsa.PublicKey:
		ok = s.Alg == "ecdsa-sha256" && ecdsa.VerifyASN1(k, sum[:], raw)
	case *rsa.PublicKey:
		ok = s.Alg == "rsa-pss-sha256" && rsa.VerifyPSS(k, crypto.SHA256, sum[:], raw, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrSignature, pub)
	}
	if !ok {
		return fmt.Errorf("%w: %s does not verify over %s", ErrSignature, SignatureFile, ManifestFile)
	}
	return nil
}

// VerifyError names the file an export check failed on.
type VerifyError struct {
	File   string
	Reason string
	Err    error // ErrSignature or ErrTampered
}

func (e *VerifyError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%v: %s", e.Err, e.Reason)
	}
	return fmt.Sprintf("%v: %s: %s", e.Err, e.File, e.Reason)
}

func (e *VerifyError) Unwrap() error { return e.Err }

func tampered(file, format string, args ...any) error {
	return &VerifyError{File: file, Reason: fmt.Sprintf(format, args...), Err: ErrTampered}
}

// VerifyExport checks an export folder against the station key pub: the
// manifest's signature, then every listed file's size and SHA-256, that no
// file is missing or added, and (for unencrypted bulk files) that each
// operation's mode and enrollment count are the manifest's and at most 10.
func VerifyExport(dir string, pub crypto.PublicKey) (*Manifest, error) {
	if pub == nil {
		return nil, ErrNoKey
	}
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, &VerifyError{File: ManifestFile, Reason: errReason(err), Err: ErrSignature}
	}
	sb, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return nil, &VerifyError{File: SignatureFile, Reason: errReason(err), Err: ErrSignature}
	}
	if err := VerifyManifest(pub, mb, sb); err != nil {
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, tampered(ManifestFile, "signed but not a manifest: %v", err)
	}
	if m.Version != 1 {
		return nil, tampered(ManifestFile, "version %d, want 1", m.Version)
	}
	id, _ := KeyID(pub)
	if m.KeyID != id {
		return nil, tampered(ManifestFile, "names key %.16s…, signed by %.16s…", m.KeyID, id)
	}
	listed := map[string]bool{ManifestFile: true, SignatureFile: true}
	enrolled := 0
	for _, f := range m.Files {
		if f.Name != filepath.Base(f.Name) || strings.HasPrefix(f.Name, ".") || listed[f.Name] {
			return nil, tampered(f.Name, "bad or repeated file name in manifest")
		}
		listed[f.Name] = true
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			return nil, tampered(f.Name, "listed in the manifest but %s", errReason(err))
		}
		if int64(len(b)) != f.Size {
			return nil, tampered(f.Name, "%d bytes, manifest says %d", len(b), f.Size)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != f.SHA256 {
			return nil, tampered(f.Name, "SHA-256 differs from the manifest")
		}
		if f.Mode != "" && !m.Encrypted {
			var op BulkOperation
			if err := json.Unmarshal(b, &op); err != nil {
				return nil, tampered(f.Name, "not a bulk operation: %v", err)
			}
			if op.Mode != f.Mode || len(op.Enrollments) != f.Enrollments || len(op.Enrollments) > MaxBulk || len(op.Enrollments) == 0 {
				return nil, tampered(f.Name, "mode %s with %d enrollments, manifest says %s with %d (at most %d)", op.Mode, len(op.Enrollments), f.Mode, f.Enrollments, MaxBulk)
			}
		}
		enrolled += f.Enrollments
	}
	if (m.Format == FormatBulk || m.Format == FormatIndividual) && enrolled != m.Counts.Enrolled {
		return nil, tampered(ManifestFile, "files hold %d enrollments, counts say %d", enrolled, m.Counts.Enrolled)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var extra []string
	for _, e := range entries {
		if !listed[e.Name()] {
			extra = append(extra, e.Name())
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return nil, tampered(extra[0], "not listed in the signed manifest (%d such files)", len(extra))
	}
	return &m, nil
}

func errReason(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "missing"
	}
	return err.Error()
}
