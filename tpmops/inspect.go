package tpmops

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/go-tpm/tpm2"
)

// Inspection is what a TPM holds, read without changing anything (see
// Inspect).
type Inspection struct {
	Info      Info
	Permanent Permanent
	DA        DAState
	// EKCerts are the EK certificate indices of EKCertSlots that are
	// defined, in that order, each read or with the reason it was not.
	EKCerts []EKCertIndex
	// Intermediates are the vendor CA certificates in the EK chain range
	// (untrusted); IntermediatesErr is why they could not be read.
	Intermediates    []*x509.Certificate
	IntermediatesErr error
	// NV lists every defined NV index.
	NV []NVPublicInfo
	// Persistent lists every persistent object, by handle.
	Persistent []Object
	// Transients were loaded before the inspection (left by another
	// client on a TPM without a resource manager): reported, never flushed.
	Transients []tpm2.TPMHandle
	// Leaked are transients present after the inspection that were not
	// before it: always empty (Inspect creates no object or session).
	Leaked []tpm2.TPMHandle
}

// Info is the TPM's identification: TPM_PT_FAMILY_INDICATOR to
// TPM_PT_FIRMWARE_VERSION_2.
type Info struct {
	// ManufacturerID is TPM_PT_MANUFACTURER; Manufacturer its four ASCII
	// characters trimmed ("IFX", "STM", "NTC", "INTC", "IBM" for swtpm);
	// Vendor the company the TCG vendor ID registry gives it ("" unknown).
	ManufacturerID uint32
	Manufacturer   string
	Vendor         string
	// VendorString is TPM_PT_VENDOR_STRING_1..4 as text.
	VendorString  string
	VendorTPMType uint32
	// FirmwareV1 and V2 are TPM_PT_FIRMWARE_VERSION_1 and _2; their
	// meaning is the vendor's (see FirmwareVersion).
	FirmwareV1, FirmwareV2 uint32
	Family                 string // "2.0"
	Level                  uint32
	Revision               uint32 // 138 = 1.38
	SpecYear, SpecDay      uint32
}

// tcgVendors are the TCG TPM Vendor ID Registry's IDs of the TPMs a line
// may meet.
var tcgVendors = map[string]string{
	"AMD": "AMD", "ATML": "Atmel", "BRCM": "Broadcom", "CSCO": "Cisco", "FLYS": "Flyslice",
	"GOOG": "Google", "HISI": "Huawei", "HPE": "HPE", "HPI": "HP", "IBM": "IBM",
	"IFX": "Infineon", "INTC": "Intel", "LEN": "Lenovo", "MSFT": "Microsoft",
	"NSM": "National Semiconductor", "NTC": "Nuvoton", "NTZ": "Nationz", "QCOM": "Qualcomm",
	"ROCC": "Fuzhou Rockchip", "SMSC": "SMSC", "SMSN": "Samsung", "SNS": "Sinosun",
	"STM": "STMicroelectronics", "TXN": "Texas Instruments", "WEC": "Winbond",
}

// FirmwareVersion renders the two firmware version properties the way the
// vendor's tools do where station knows it (Infineon: major.minor from
// version 1, then the build in bits 23..8 of version 2 and its low byte),
// else as the four 16-bit halves, most significant first.
func (i Info) FirmwareVersion() string {
	v1, v2 := i.FirmwareV1, i.FirmwareV2
	if i.Manufacturer == "IFX" {
		return fmt.Sprintf("%d.%d.%d.%d", v1>>16, v1&0xffff, (v2>>8)&0xffff, v2&0xff)
	}
	return fmt.Sprintf("%d.%d.%d.%d", v1>>16, v1&0xffff, v2>>16, v2&0xffff)
}

// RevisionString is the specification revision as written ("1.38").
func (i Info) RevisionString() string {
	return fmt.Sprintf("%d.%02d", i.Revision/100, i.Revision%100)
}

// asciiProperty turns a property's four bytes into text, dropping NULs and
// surrounding spaces.
func asciiProperty(vs ...uint32) string {
	var b []byte
	for _, v := range vs {
		for _, c := range []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} {
			switch {
			case c == 0:
			case c < 0x20 || c > 0x7e:
				b = append(b, '?')
			default:
				b = append(b, c)
			}
		}
	}
	return strings.TrimSpace(string(b))
}

// Info reads the TPM's fixed identification properties in one command.
func (t *TPM) Info() (Info, error) {
	first, last := tpm2.TPMPTFamilyIndicator, tpm2.TPMPTFirmwareVersion2
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(first),
		PropertyCount: uint32(last-first) + 1,
	}.Execute(t.tr)
	if err != nil {
		return Info{}, fmt.Errorf("reading the TPM's identification: %w", classify(err))
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return Info{}, fmt.Errorf("decoding the TPM's identification: %w", err)
	}
	v := map[tpm2.TPMPT]uint32{}
	for _, p := range props.TPMProperty {
		v[p.Property] = p.Value
	}
	if _, ok := v[tpm2.TPMPTManufacturer]; !ok {
		return Info{}, errors.New("the TPM does not report TPM_PT_MANUFACTURER")
	}
	i := Info{
		ManufacturerID: v[tpm2.TPMPTManufacturer],
		Manufacturer:   asciiProperty(v[tpm2.TPMPTManufacturer]),
		VendorString:   asciiProperty(v[tpm2.TPMPTVendorString1], v[tpm2.TPMPTVendorString2], v[tpm2.TPMPTVendorString3], v[tpm2.TPMPTVendorString4]),
		VendorTPMType:  v[tpm2.TPMPTVendorTPMType],
		FirmwareV1:     v[tpm2.TPMPTFirmwareVersion1],
		FirmwareV2:     v[tpm2.TPMPTFirmwareVersion2],
		Family:         asciiProperty(v[tpm2.TPMPTFamilyIndicator]),
		Level:          v[tpm2.TPMPTLevel],
		Revision:       v[tpm2.TPMPTRevision],
		SpecYear:       v[tpm2.TPMPTYear],
		SpecDay:        v[tpm2.TPMPTDayofYear],
	}
	i.Vendor = tcgVendors[i.Manufacturer]
	return i, nil
}

// DAState is the dictionary-attack state: the failure counter, the
// parameters, and whether the TPM is in lockout.
type DAState struct {
	InLockout bool
	Counter   uint32 // TPM_PT_LOCKOUT_COUNTER
	DAParams
}

// DAState reads the dictionary-attack counter and parameters (inLockout
// comes from TPM_PT_PERMANENT: see Permanent).
func (t *TPM) DAState() (DAState, error) {
	n, err := t.property(tpm2.TPMPTLockoutCounter)
	if err != nil {
		return DAState{}, err
	}
	p, err := t.DAParams()
	if err != nil {
		return DAState{}, err
	}
	return DAState{Counter: n, DAParams: p}, nil
}

// Template names a key template station knows, recognised in a public
// area whatever its unique field (see MatchTemplate).
type Template string

// The templates MatchTemplate recognises.
const (
	TemplateEKRSA2048  Template = "ek-rsa2048"  // TCG EK Credential Profile L-1
	TemplateEKECCP256  Template = "ek-ecc-p256" // L-2
	TemplateEKECCP384  Template = "ek-ecc-p384" // H-3
	TemplateSRKRSA2048 Template = "srk-rsa2048" // TCG Provisioning Guidance SRK
	TemplateSRKECCP256 Template = "srk-ecc-p256"
	TemplateDeviceKey  Template = "device-key" // DeviceKeyTemplate
	// TemplateDPSKey is the HMAC key DPS sends and the SDKs (and station
	// verify's DPS challenge) import and persist.
	TemplateDPSKey Template = "dps-hmac-key"
)

type namedTemplate struct {
	name Template
	tmpl tpm2.TPMTPublic
}

var knownTemplates = sync.OnceValue(func() []namedTemplate {
	ekRSA, _, _ := EKTemplate(RSA2048)
	ekP256, _, _ := EKTemplate(ECCP256)
	ekP384, _, _ := EKTemplate(ECCP384)
	srkRSA, _, _ := SRKTemplate(RSA2048)
	srkP256, _, _ := SRKTemplate(ECCP256)
	return []namedTemplate{
		{TemplateEKRSA2048, ekRSA}, {TemplateEKECCP256, ekP256}, {TemplateEKECCP384, ekP384},
		{TemplateSRKRSA2048, srkRSA}, {TemplateSRKECCP256, srkP256},
		{TemplateDeviceKey, DeviceKeyTemplate}, {TemplateDPSKey, dpsHMACKeyPublic(nil)},
	}
})

// MatchTemplate names the known template a public area was made from: every
// field equal but the unique one (which holds the key). "" for none. It
// reads the public area only: whether the key is the one the template
// gives on this TPM would take a CreatePrimary, which an inspection avoids.
func MatchTemplate(area *tpm2.TPMTPublic) Template {
	if area == nil {
		return ""
	}
	for _, k := range knownTemplates() {
		if sameShape(area, k.tmpl) {
			return k.name
		}
	}
	return ""
}

// KeyAlgName names a public area's algorithm in the config's words where
// there are some ("rsa2048", "ecc-p256", "ecc-p384"), else descriptively
// ("ecc-p521", "keyedhash", "symcipher").
func KeyAlgName(area *tpm2.TPMTPublic) string {
	switch area.Type {
	case tpm2.TPMAlgRSA:
		if p, err := area.Parameters.RSADetail(); err == nil {
			return fmt.Sprintf("rsa%d", p.KeyBits)
		}
		return "rsa"
	case tpm2.TPMAlgECC:
		if p, err := area.Parameters.ECCDetail(); err == nil {
			switch p.CurveID {
			case tpm2.TPMECCNistP256:
				return "ecc-p256"
			case tpm2.TPMECCNistP384:
				return "ecc-p384"
			case tpm2.TPMECCNistP521:
				return "ecc-p521"
			case tpm2.TPMECCSM2P256:
				return "ecc-sm2-p256"
			case tpm2.TPMECCBNP256:
				return "ecc-bn-p256"
			}
			return fmt.Sprintf("ecc-curve-%#x", uint16(p.CurveID))
		}
		return "ecc"
	case tpm2.TPMAlgKeyedHash:
		return "keyedhash"
	case tpm2.TPMAlgSymCipher:
		return "symcipher"
	}
	return fmt.Sprintf("alg-%#x", uint16(area.Type))
}

// Object is one persistent object as ReadPublic shows it.
type Object struct {
	Handle tpm2.TPMHandle
	// Public is the TPM2B_PUBLIC (what Key.Public holds), Name the
	// TPM2B_NAME contents.
	Public []byte
	Name   []byte
	Area   *tpm2.TPMTPublic
	// Pub is the Go public key; nil for keyed-hash and symmetric objects.
	Pub      crypto.PublicKey
	Alg      string
	Template Template
}

// readObject reads a persistent object's public area: any type (ReadPublic
// wants an asymmetric key).
func (t *TPM) readObject(h tpm2.TPMHandle) (Object, error) {
	rsp, err := t.readPublic(h)
	if err != nil {
		return Object{}, err
	}
	area, err := rsp.OutPublic.Contents()
	if err != nil {
		return Object{}, fmt.Errorf("decoding public area of %#x: %w", uint32(h), err)
	}
	o := Object{Handle: h, Public: tpm2.Marshal(rsp.OutPublic), Name: bytes.Clone(rsp.Name.Buffer), Area: area,
		Alg: KeyAlgName(area), Template: MatchTemplate(area)}
	if pub, err := tpm2.Pub(*area); err == nil {
		o.Pub = pub
	}
	return o, nil
}

// EKCertIndex is one defined EK certificate NV index: its public area and
// the certificate read from it, or why there is none.
type EKCertIndex struct {
	Slot EKCertSlot
	NV   NVPublicInfo
	// Cert is nil when Err says why the index was not read or holds no
	// certificate.
	Cert *EKCertificate
	Err  error
}

// Certifies reports whether the index's certificate certifies pub.
func (e EKCertIndex) Certifies(pub crypto.PublicKey) bool {
	return e.Cert != nil && e.Cert.certifies(pub)
}

// inspectEKCert reads one EK certificate index. An index without
// TPMA_NV_NO_DA is not read: a read authorised with a wrong (assumed
// empty) index auth would count against the dictionary-attack counter.
func (t *TPM) inspectEKCert(s EKCertSlot) (EKCertIndex, error) {
	info, err := t.NVPublic(s.Index)
	if err != nil {
		return EKCertIndex{}, err
	}
	e := EKCertIndex{Slot: s, NV: info}
	switch {
	case !info.Attrs.Written:
		e.Err = errors.New("defined but never written")
		return e, nil
	case !info.Attrs.NoDA:
		e.Err = errors.New("not read: the index is dictionary-attack protected (no TPMA_NV_NO_DA)")
		return e, nil
	}
	raw, err := t.NVRead(s.Index)
	if errors.Is(err, ErrUnreachable) {
		return e, err
	}
	if err != nil {
		e.Err = err
		return e, nil
	}
	c, err := ParseEKCertificate(fmt.Sprintf("NV %#08x", s.Index), raw)
	if err != nil {
		e.Err = err
		return e, nil
	}
	c.Index = s.Index
	e.Cert = c
	return e, nil
}

// Inspect reads what the TPM holds: identification, hierarchy auth bits,
// dictionary-attack state, every EK certificate index and the vendor
// intermediates in NV, every NV index's public area and every persistent
// object's public area. It only reads: no object is created, loaded,
// persisted or evicted, no auth is used against a dictionary-attack
// protected entity, no NV index is written, and nothing is flushed
// (transients another client left are reported in Transients). Leaked is
// checked at the end. Only a TPM that stops answering is an error; what
// cannot be read of one index or object is reported with it.
func (t *TPM) Inspect() (*Inspection, error) {
	in := &Inspection{}
	before, err := t.Transients()
	if err != nil {
		return nil, err
	}
	in.Transients = before
	if in.Info, err = t.Info(); err != nil {
		return nil, err
	}
	if in.Permanent, err = t.Permanent(); err != nil {
		return nil, err
	}
	if in.DA, err = t.DAState(); err != nil {
		return nil, err
	}
	in.DA.InLockout = in.Permanent.InLockout

	nvs, err := t.handles(tpm2.TPMHTNVIndex)
	if err != nil {
		return nil, err
	}
	defined := map[uint32]bool{}
	for _, h := range nvs {
		defined[uint32(h)] = true
		info, err := t.NVPublic(uint32(h))
		if err != nil {
			return nil, err
		}
		in.NV = append(in.NV, info)
	}
	for _, s := range EKCertSlots {
		if !defined[s.Index] {
			continue
		}
		e, err := t.inspectEKCert(s)
		if err != nil {
			return nil, err
		}
		in.EKCerts = append(in.EKCerts, e)
	}
	in.Intermediates, in.IntermediatesErr = t.ReadEKChain()
	if errors.Is(in.IntermediatesErr, ErrUnreachable) {
		return nil, in.IntermediatesErr
	}

	ps, err := t.Persistent()
	if err != nil {
		return nil, err
	}
	for _, h := range ps {
		o, err := t.readObject(h)
		if err != nil {
			return nil, err
		}
		in.Persistent = append(in.Persistent, o)
	}

	after, err := t.Transients()
	if err != nil {
		return nil, err
	}
	was := map[tpm2.TPMHandle]bool{}
	for _, h := range before {
		was[h] = true
	}
	for _, h := range after {
		if !was[h] {
			in.Leaked = append(in.Leaked, h)
		}
	}
	return in, nil
}

// IsEKChainIndex reports whether an NV index is in the EK certificate chain
// range (vendor intermediates).
func IsEKChainIndex(index uint32) bool { return index >= ekChainFirst && index <= ekChainLast }

// CertifyingIndex returns the EK certificate index whose certificate
// certifies pub, or nil.
func (in *Inspection) CertifyingIndex(pub crypto.PublicKey) *EKCertIndex {
	for i := range in.EKCerts {
		if in.EKCerts[i].Certifies(pub) {
			return &in.EKCerts[i]
		}
	}
	return nil
}
