package flash

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// DefaultNVIndex is where tpm-nv writes the device certificate (owner range).
const DefaultNVIndex = 0x01500010

// TPMA_NV bits (TPM 2.0 Part 2, 13.4).
const (
	NVPPWrite     = 1 << 0
	NVOwnerWrite  = 1 << 1
	NVAuthWrite   = 1 << 2
	NVPolicyWrite = 1 << 3
	NVWriteLocked = 1 << 11
	NVWriteAll    = 1 << 12
	NVWriteDefine = 1 << 13
	NVOwnerRead   = 1 << 17
	NVAuthRead    = 1 << 18
	NVNoDA        = 1 << 25
	NVWritten     = 1 << 29
)

// NVAttrs are the attributes tpm-nv defines its index with: only the owner
// writes (no auth, policy or platform write), the whole certificate at once,
// and NV_WriteLock after writing locks it until the owner undefines the
// index; anyone may read it with the index's empty auth (like the EK
// certificate) or the owner's; no dictionary-attack counting.
const NVAttrs = NVOwnerWrite | NVWriteAll | NVWriteDefine | NVOwnerRead | NVAuthRead | NVNoDA

// nvWriteMask: any of these set on the index means someone else than the
// owner could write it.
const nvWriteMask = NVPPWrite | NVAuthWrite | NVPolicyWrite

// ErrNVNotDefined is what an NVDevice wraps when the index does not exist.
var ErrNVNotDefined = errors.New("NV index not defined")

type nvTarget struct {
	nv    NVDevice
	index uint32
}

func newNVTarget(nv NVDevice, index uint32) (*nvTarget, error) {
	// Owner NV indices: 0x01000000..0x013fffff is TCG-reserved space in
	// practice (EK certificates live at 0x01c0xxxx); the owner range used
	// for platform software is 0x01400000..0x017fffff.
	if index < 0x01000000 || index > 0x01bfffff {
		return nil, specErr("nv index 0x%08x is not an owner NV index (0x01000000-0x01bfffff)", index)
	}
	return &nvTarget{nv: nv, index: index}, nil
}

func (n *nvTarget) Name() string { return "tpm-nv" }

func (n *nvTarget) where() string { return fmt.Sprintf("tpm-nv 0x%08x", n.index) }

// certCN parses a certificate read from NV (cut at its own DER length: the
// index may be larger) and returns its CN.
func certCN(data []byte) (string, bool) {
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(data, &raw)
	if err != nil {
		return "", false
	}
	c, err := x509.ParseCertificate(data[:len(data)-len(rest)])
	if err != nil {
		return "", false
	}
	return c.Subject.CommonName, true
}

func (n *nvTarget) Write(_ context.Context, j Job) (Result, error) {
	res := Result{Target: n.Name(), Detail: map[string]string{"nv_index": fmt.Sprintf("0x%08x", n.index)}}
	if err := checkJob(j); err != nil {
		return res, err
	}
	der := j.Bundle.CertDER()
	limit, err := n.nv.NVMaxSize()
	if err != nil {
		return res, fmt.Errorf("%s: reading the TPM's NV limit: %w", n.where(), err)
	}
	res.Detail["nv_index_max"] = fmt.Sprint(limit)
	if len(der) > limit {
		return res, fmt.Errorf("%s: certificate of %d bytes, the TPM allows %d per index: %w", n.where(), len(der), limit, ErrNVTooLarge)
	}

	attrs, size, err := n.nv.NVPublic(n.index)
	switch {
	case errors.Is(err, ErrNVNotDefined):
	case err != nil:
		return res, fmt.Errorf("%s: %w", n.where(), err)
	default:
		done, err := n.settle(j, der, attrs, size)
		if err != nil {
			return res, err
		}
		if done {
			res.Detail["nv_write"] = "already held this certificate, locked"
			return n.finish(res, der)
		}
	}
	if err := n.nv.NVDefineWrite(n.index, der, j.OwnerAuth, NVAttrs); err != nil {
		return res, fmt.Errorf("%s: writing the certificate: %w", n.where(), err)
	}
	res.Detail["nv_write"] = "defined, written, write-locked"
	return n.finish(res, der)
}

// settle decides about an index that already exists: (true, nil) when it
// already holds exactly this certificate, locked with our attributes;
// (false, nil) after undefining it (a torn write of ours, or this unit's
// older certificate, or Force); ErrOtherUnit otherwise.
func (n *nvTarget) settle(j Job, der []byte, attrs uint32, size int) (bool, error) {
	ours := attrs&^(NVWritten|NVWriteLocked) == NVAttrs
	var data []byte
	if attrs&NVWritten != 0 {
		var err error
		if data, err = n.nv.NVRead(n.index); err != nil {
			return false, fmt.Errorf("%s: reading what the index holds: %w", n.where(), err)
		}
	}
	if ours && attrs&NVWriteLocked != 0 && size == len(der) && bytes.Equal(data, der) {
		return true, nil
	}
	cn, isCert := certCN(data)
	switch {
	case j.Force:
	case isCert && cn == j.Bundle.RegistrationID:
		// This unit's older certificate (a re-issue): replace it.
	case ours && attrs&NVWritten == 0:
		// Defined by us, never written: a write torn by a crash.
	case isCert:
		return false, &otherUnitError{where: n.where(), serial: "registration ID " + cn, want: j.Serial}
	default:
		return false, fmt.Errorf("%s holds %d bytes that are not a certificate (attributes 0x%08x); another application may own it: %w",
			n.where(), size, attrs, ErrOtherUnit)
	}
	if err := n.nv.NVUndefine(n.index, j.OwnerAuth); err != nil {
		return false, fmt.Errorf("%s: removing the old index: %w", n.where(), err)
	}
	return false, nil
}

func (n *nvTarget) finish(res Result, der []byte) (Result, error) {
	if err := n.check(der); err != nil {
		return res, err
	}
	res.Detail["nv_size"] = fmt.Sprint(len(der))
	res.Detail["nv_attrs"] = fmt.Sprintf("0x%08x", NVAttrs|NVWritten|NVWriteLocked)
	res.Detail["certificate_sha256"] = sha256Hex(der)
	res.Detail["readback"] = "NV_Read byte-for-byte, attributes checked"
	return res, nil
}

// check reads the index back through NV_Read and checks its public area:
// our attributes, written, write-locked, nobody but the owner may write.
func (n *nvTarget) check(der []byte) error {
	attrs, size, err := n.nv.NVPublic(n.index)
	if err != nil {
		return fmt.Errorf("%s: reading back: %v: %w", n.where(), err, ErrReadback)
	}
	if attrs&nvWriteMask != 0 || attrs&NVOwnerWrite == 0 {
		return fmt.Errorf("%s: attributes 0x%08x let others than the owner write it: %w", n.where(), attrs, ErrReadback)
	}
	if attrs&(NVWritten|NVWriteLocked) != NVWritten|NVWriteLocked {
		return fmt.Errorf("%s: attributes 0x%08x: not written and write-locked: %w", n.where(), attrs, ErrReadback)
	}
	if size != len(der) {
		return fmt.Errorf("%s: index of %d bytes, certificate of %d: %w", n.where(), size, len(der), ErrReadback)
	}
	got, err := n.nv.NVRead(n.index)
	if err != nil {
		return fmt.Errorf("%s: NV_Read: %v: %w", n.where(), err, ErrReadback)
	}
	if !bytes.Equal(got, der) {
		return fmt.Errorf("%s: NV_Read returned %d bytes that differ from the certificate: %w", n.where(), len(got), ErrReadback)
	}
	return nil
}

func (n *nvTarget) ReadBack(_ context.Context, j Job) error {
	if j.Bundle == nil || len(j.Bundle.certDER) == 0 {
		return fmt.Errorf("%s: no certificate to compare with: %w", n.where(), ErrReadback)
	}
	return n.check(j.Bundle.certDER)
}
