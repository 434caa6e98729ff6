package credbundle

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"sort"
	"strconv"

	"github.com/factory-id/station/tsskey"
)

// Names in a bundle folder (docs/BUNDLE.md). They are fixed: nothing in a
// bundle folder's layout comes from unit data.
const (
	FileManifest     = "manifest.json"
	FileCert         = "device.crt"
	FileChain        = "chain.pem"
	FileSealedKey    = "device-key.sealed"
	FileSymmetricKey = "device-key"
	// Version 2: the device key as a TSS2 private key file (PEM), and the
	// device-side manifest naming what the device's software needs.
	FileTPMKey = "device-key.tss2.pem"
	FileDevice = "device.json"
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
	if b.Version >= Version2 {
		files[FileTPMKey] = pem.EncodeToMemory(&pem.Block{Type: tsskey.PEMType, Bytes: b.TPMKey})
		if files[FileDevice], err = b.deviceJSON(); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// DeviceManifest is device.json (version 2 folders): what the device's own
// software needs to find its identity, file names relative to the folder.
// It is derived from the bundle's signed fields, so it has no signature of
// its own: a reader recomputes it and refuses a folder whose device.json
// differs by a byte.
type DeviceManifest struct {
	Format         string       `json:"format"`  // "station-device"
	Version        int          `json:"version"` // 1
	Serial         string       `json:"serial"`
	RegistrationID string       `json:"registration_id"`
	Attestation    string       `json:"attestation"`
	IDScope        string       `json:"id_scope"`
	GlobalEndpoint string       `json:"global_endpoint"`
	Certificate    string       `json:"certificate"` // the device certificate, PEM
	Chain          string       `json:"chain"`       // issuer first, up to (not including) the root, PEM
	Key            DeviceKeyRef `json:"key"`
}

// DeviceKeyRef is device.json's "key": where the device key is.
type DeviceKeyRef struct {
	Handle    string `json:"handle"`     // persistent handle of the device key, "0x81000010"
	File      string `json:"file"`       // the same key as a TSS2 private key file
	Parent    string `json:"parent"`     // the SRK's persistent handle the file is loaded under
	EmptyAuth bool   `json:"empty_auth"` // the key's userAuth is empty
}

// DeviceManifestFormat and DeviceManifestVersion identify device.json.
const (
	DeviceManifestFormat  = "station-device"
	DeviceManifestVersion = 1
)

// Device returns the bundle's device manifest (version 2 bundles only).
func (b *Bundle) Device() (*DeviceManifest, error) {
	if b.Version < Version2 {
		return nil, bundleErr("a version %d bundle has no device manifest", b.Version)
	}
	k, err := tsskey.ParseDER(b.TPMKey)
	if err != nil {
		return nil, bundleErr("TPM key file: %v", err)
	}
	d := &DeviceManifest{
		Format: DeviceManifestFormat, Version: DeviceManifestVersion, Serial: b.Serial,
		RegistrationID: b.RegistrationID, Attestation: b.Attestation, IDScope: b.IDScope,
		GlobalEndpoint: b.GlobalEndpoint, Certificate: FileCert, Chain: FileChain,
	}
	d.Key = DeviceKeyRef{Handle: fmt.Sprintf("0x%08x", b.DeviceKeyHandle), File: FileTPMKey,
		Parent: fmt.Sprintf("0x%08x", k.Parent), EmptyAuth: k.EmptyAuth}
	return d, nil
}

func (b *Bundle) deviceJSON() ([]byte, error) {
	d, err := b.Device()
	if err != nil {
		return nil, err
	}
	j, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(j, '\n'), nil
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
	case FileSealedKey, FileSymmetricKey, FileTPMKey, FileImage:
		return 0o600
	}
	return 0o644
}

// ParseFolder decodes the folder form (file name -> contents) strictly: the
// known files only, each field checked, and the digest recomputed from the
// contents. It does not check the signature (Bundle.Verify does).
func ParseFolder(files map[string][]byte) (*Bundle, error) {
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
	if err := knownVersion(m.Version); err != nil {
		return nil, err
	}
	for n := range files {
		switch n {
		case FileManifest, FileCert, FileChain, FileSealedKey, FileSymmetricKey:
		case FileTPMKey, FileDevice:
			if m.Version >= Version2 {
				break
			}
			fallthrough
		default:
			return nil, bundleErr("unexpected file %q in a version %d bundle folder", n, m.Version)
		}
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
	if m.Version >= Version2 {
		kf, ok := files[FileTPMKey]
		if !ok {
			return nil, bundleErr("no %s", FileTPMKey)
		}
		k, err := tsskey.ParsePEM(kf)
		if err != nil {
			return nil, bundleErr("%s: %v", FileTPMKey, err)
		}
		if b.TPMKey, err = k.MarshalDER(); err != nil {
			return nil, bundleErr("%s: %v", FileTPMKey, err)
		}
	}
	if err := b.finishParse(); err != nil {
		return nil, err
	}
	if m.Version >= Version2 {
		want, err := b.deviceJSON()
		if err != nil {
			return nil, err
		}
		if got, ok := files[FileDevice]; !ok {
			return nil, bundleErr("no %s", FileDevice)
		} else if !bytes.Equal(got, want) {
			return nil, bundleErr("%s does not match the bundle (edited?)", FileDevice)
		}
	}
	return b, nil
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// PeekFolderSerial reads the serial a folder's manifest.json names, without
// checking anything else (a torn folder of a unit still names it). ok is
// false when no valid serial can be read.
func PeekFolderSerial(manifestJSON []byte) (serial string, ok bool) {
	var m struct {
		Serial string `json:"serial"`
	}
	if json.Unmarshal(manifestJSON, &m) != nil || ValidSerial(m.Serial) != nil {
		return "", false
	}
	return m.Serial, true
}
