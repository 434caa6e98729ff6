package flash

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// Names in a bundle folder (docs/BUNDLE.md). They are fixed: nothing in a
// bundle folder's layout comes from unit data.
const (
	FileManifest     = "manifest.json"
	FileCert         = "device.crt"
	FileChain        = "chain.pem"
	FileSealedKey    = "device-key.sealed"
	FileSymmetricKey = "device-key"
	// FileImage is the single-file form's usual name.
	FileImage = "station-bundle.bin"
)

// manifest is manifest.json: every scalar field plus digest and signature.
type manifest struct {
	Format          string `json:"format"`
	Version         int    `json:"version"`
	Serial          string `json:"serial"`
	RegistrationID  string `json:"registration_id"`
	Attestation     string `json:"attestation"`
	IDScope         string `json:"id_scope"`
	GlobalEndpoint  string `json:"global_endpoint"`
	DeviceKeyHandle string `json:"device_key_handle"`
	FirmwareSHA256  string `json:"firmware_sha256"`
	FirmwareVersion string `json:"firmware_version,omitempty"`
	StationID       string `json:"station_id,omitempty"`
	SignerKeyID     string `json:"signer_key_id"`
	SigAlg          string `json:"sig_alg"`
	Digest          string `json:"digest"`
	Signature       string `json:"signature"`
}

const manifestFormat = "station-bundle"

// Folder returns the folder form of a signed bundle: file name -> contents.
// Key files are to be written 0600 (FileMode says so).
func (b *Bundle) Folder() (map[string][]byte, error) {
	if len(b.Digest) == 0 || len(b.Signature) == 0 {
		return nil, fmt.Errorf("%w: bundle is not signed", ErrSignature)
	}
	m := manifest{
		Format: manifestFormat, Version: b.Version, Serial: b.Serial, RegistrationID: b.RegistrationID,
		Attestation: b.Attestation, IDScope: b.IDScope, GlobalEndpoint: b.GlobalEndpoint,
		DeviceKeyHandle: fmt.Sprintf("0x%08x", b.DeviceKeyHandle), FirmwareSHA256: b.FirmwareSHA256,
		FirmwareVersion: b.FirmwareVersion, StationID: b.StationID,
		SignerKeyID: hex.EncodeToString(b.SignerKeyID), SigAlg: b.SigAlg,
		Digest: hex.EncodeToString(b.Digest), Signature: base64.StdEncoding.EncodeToString(b.Signature),
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		FileManifest: append(mj, '\n'),
		FileCert:     encodePEM(b.certDER),
		FileChain:    encodePEM(b.chainDER...),
	}
	if len(b.SealedKey) > 0 {
		files[FileSealedKey] = []byte(b.SealedKey)
	}
	if len(b.SymmetricKey) > 0 {
		files[FileSymmetricKey] = []byte(b.SymmetricKey)
	}
	return files, nil
}

// FolderOrder lists a folder's files in the order they are written: the
// manifest (which commits to the others through the digest) last.
func FolderOrder(files map[string][]byte) []string {
	var names []string
	for n := range files {
		if n != FileManifest {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return append(names, FileManifest)
}

// FileMode is the permission a bundle file is written with: key material
// 0600, the rest 0644.
func FileMode(name string) os.FileMode {
	switch name {
	case FileSealedKey, FileSymmetricKey, FileImage:
		return 0o600
	}
	return 0o644
}

// ParseFolder decodes the folder form (file name -> contents) strictly: the
// known files only, each field checked, and the digest recomputed from the
// contents. It does not check the signature (Bundle.Verify does).
func ParseFolder(files map[string][]byte) (*Bundle, error) {
	for n := range files {
		switch n {
		case FileManifest, FileCert, FileChain, FileSealedKey, FileSymmetricKey:
		default:
			return nil, bundleErr("unexpected file %q in bundle folder", n)
		}
	}
	mj, ok := files[FileManifest]
	if !ok {
		return nil, bundleErr("no %s", FileManifest)
	}
	var m manifest
	if err := strictJSON(mj, &m); err != nil {
		return nil, bundleErr("%s: %v", FileManifest, err)
	}
	if m.Format != manifestFormat {
		return nil, bundleErr("%s: format %q", FileManifest, m.Format)
	}
	if m.Version != Version {
		return nil, bundleErr("version %d (this station reads version %d)", m.Version, Version)
	}
	h, err := strconv.ParseUint(m.DeviceKeyHandle, 0, 32)
	if err != nil {
		return nil, bundleErr("device_key_handle %q", m.DeviceKeyHandle)
	}
	b := &Bundle{
		Version: m.Version, Serial: m.Serial, RegistrationID: m.RegistrationID, Attestation: m.Attestation,
		IDScope: m.IDScope, GlobalEndpoint: m.GlobalEndpoint, DeviceKeyHandle: uint32(h),
		FirmwareSHA256: m.FirmwareSHA256, FirmwareVersion: m.FirmwareVersion, StationID: m.StationID,
		SigAlg: m.SigAlg,
	}
	if b.SignerKeyID, err = hex.DecodeString(m.SignerKeyID); err != nil || len(b.SignerKeyID) != 32 {
		return nil, bundleErr("signer_key_id %q", m.SignerKeyID)
	}
	if b.Digest, err = hex.DecodeString(m.Digest); err != nil || len(b.Digest) != 32 {
		return nil, bundleErr("digest %q", m.Digest)
	}
	if b.Signature, err = base64.StdEncoding.Strict().DecodeString(m.Signature); err != nil || len(b.Signature) == 0 {
		return nil, bundleErr("signature: not base64")
	}
	cert, ok := files[FileCert]
	if !ok {
		return nil, bundleErr("no %s", FileCert)
	}
	chain, ok := files[FileChain]
	if !ok {
		return nil, bundleErr("no %s", FileChain)
	}
	if b.certDER, b.chainDER, err = parseCerts(cert, chain); err != nil {
		return nil, err
	}
	if k, ok := files[FileSealedKey]; ok {
		b.SealedKey = Secret(k)
	}
	if k, ok := files[FileSymmetricKey]; ok {
		b.SymmetricKey = Secret(k)
	}
	if err := b.finishParse(); err != nil {
		return nil, err
	}
	return b, nil
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytesReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// ReadFolder reads a bundle folder from disk (see ParseFolder). Symbolic
// links and sub-folders are refused.
func ReadFolder(dir string) (*Bundle, error) {
	files, err := readFolderFiles(dir)
	if err != nil {
		return nil, err
	}
	return ParseFolder(files)
}

func readFolderFiles(dir string) (map[string][]byte, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range ents {
		if e.Type()&fs.ModeType != 0 {
			return nil, bundleErr("%s in bundle folder is not a regular file", e.Name())
		}
		data, err := readFileLimited(filepath.Join(dir, e.Name()), MaxImageSize)
		if err != nil {
			return nil, err
		}
		files[e.Name()] = data
	}
	return files, nil
}
