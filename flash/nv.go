package flash

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/factory-id/station/tpmops"
	"github.com/google/go-tpm/tpm2"
)

// DefaultNVIndex is where tpm-nv writes the device certificate (owner range).
const DefaultNVIndex = 0x01500010

// NVDevice is what the tpm-nv target needs from the unit's TPM; *tpmops.TPM
// has these methods. NVRead and NVPublic wrap tpmops.ErrHandleEmpty for an
// index that is not defined (or not written).
type NVDevice interface {
	NVDefineWrite(index uint32, data []byte, ownerAuth []byte, attrs tpmops.NVAttrs) error
	NVRead(index uint32) ([]byte, error)
	NVPublic(index uint32) (tpmops.NVPublicInfo, error)
	NVMaxSize() (int, error)
	// NVUndefine removes an index of the kind NVDefineWrite makes (to
	// replace this unit's older certificate, or another's with Force).
	NVUndefine(index uint32, ownerAuth []byte) error
}

// The attributes tpm-nv's index has (tpmops.NVDefineWrite with WriteLock):
// OWNERWRITE|OWNERREAD|AUTHREAD|NO_DA|WRITEDEFINE, ordinary, empty index
// auth. Only the owner writes it; NV_WriteLock after the write locks it
// until the owner undefines the index; anyone reads it (like the EK
// certificate), with the index's empty auth or the owner's.
var nvWant = tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, WriteDefine: true, NT: tpm2.TPMNTOrdinary}

// ours reports whether a has exactly tpm-nv's attributes (ignoring the
// state bits WRITTEN and WRITELOCKED).
func ours(a tpm2.TPMANV) bool {
	a.Written, a.WriteLocked = false, false
	return tpmops.AttrBits(a) == tpmops.AttrBits(nvWant)
}

type nvTarget struct {
	nv    NVDevice
	index uint32
}

func newNVTarget(nv NVDevice, index uint32) (*nvTarget, error) {
	// Owner-defined NV indices are 0x01000000-0x01bfffff; 0x01c00000 and up
	// are the TCG's (EK and platform certificates).
	if index < 0x01000000 || index > 0x01bfffff {
		return nil, specErr("nv index 0x%08x is not an owner NV index (0x01000000-0x01bfffff)", index)
	}
	return &nvTarget{nv: nv, index: index}, nil
}

func (n *nvTarget) Name() string { return "tpm-nv" }

func (n *nvTarget) where() string { return fmt.Sprintf("tpm-nv 0x%08x", n.index) }

// certCN parses a certificate read from NV (cut at its own DER length) and
// returns its CN.
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
	info, err := n.nv.NVPublic(n.index)
	switch {
	case errors.Is(err, tpmops.ErrHandleEmpty):
	case err != nil:
		return res, fmt.Errorf("%s: %w", n.where(), err)
	default:
		done, err := n.settle(j, der, info)
		if err != nil {
			return res, err
		}
		if done {
			res.Detail["nv_write"] = "already held this certificate, locked"
			return n.finish(res, der)
		}
	}
	if err := n.nv.NVDefineWrite(n.index, der, j.OwnerAuth, tpmops.NVAttrs{WriteLock: true}); err != nil {
		return res, fmt.Errorf("%s: writing the certificate: %w", n.where(), err)
	}
	res.Detail["nv_write"] = "defined, written, write-locked"
	return n.finish(res, der)
}

// settle decides about an index that already exists: (true, nil) when it
// holds exactly this certificate, locked, with tpm-nv's attributes;
// (false, nil) once it is undefined (this unit's older certificate, a torn
// write of ours, or Force); ErrOtherUnit when it holds another unit's
// certificate or anything that is not a certificate.
func (n *nvTarget) settle(j Job, der []byte, info tpmops.NVPublicInfo) (bool, error) {
	a := info.Attrs
	var data []byte
	if a.Written {
		var err error
		if data, err = n.nv.NVRead(n.index); err != nil {
			return false, fmt.Errorf("%s: reading what the index holds: %w", n.where(), err)
		}
	}
	if ours(a) && a.WriteLocked && bytes.Equal(data, der) {
		return true, nil
	}
	cn, isCert := certCN(data)
	switch {
	case j.Force:
	case isCert && cn == j.Bundle.RegistrationID:
		// This unit's older certificate (a re-issue): replace it.
	case ours(a) && !a.Written:
		// Defined by tpm-nv, never written: a write torn by a crash.
	case isCert:
		return false, &otherUnitError{where: n.where(), serial: "registration ID " + cn, want: j.Serial}
	default:
		return false, fmt.Errorf("%s holds %d bytes that are not a certificate (attributes 0x%08x); another application may own it: %w",
			n.where(), info.Size, tpmops.AttrBits(a), ErrOtherUnit)
	}
	if err := n.nv.NVUndefine(n.index, j.OwnerAuth); err != nil {
		return false, fmt.Errorf("%s: removing the old index: %w", n.where(), err)
	}
	return false, nil
}

func (n *nvTarget) finish(res Result, der []byte) (Result, error) {
	info, err := n.check(der)
	if err != nil {
		return res, err
	}
	res.Detail["nv_size"] = fmt.Sprint(info.Size)
	res.Detail["nv_attrs"] = fmt.Sprintf("0x%08x", tpmops.AttrBits(info.Attrs))
	res.Detail["certificate_sha256"] = sha256Hex(der)
	res.Detail["readback"] = "NV_Read byte-for-byte; attributes owner-write-only, written, write-locked"
	return res, nil
}

// check reads the index back through NV_Read and checks its public area:
// tpm-nv's attributes exactly, written and write-locked, the certificate's size.
func (n *nvTarget) check(der []byte) (tpmops.NVPublicInfo, error) {
	info, err := n.nv.NVPublic(n.index)
	if err != nil {
		return info, fmt.Errorf("%s: reading back: %v: %w", n.where(), err, ErrReadback)
	}
	a := info.Attrs
	if !ours(a) {
		return info, fmt.Errorf("%s: attributes 0x%08x, want 0x%08x (owner-write only, write-define): %w",
			n.where(), tpmops.AttrBits(a), tpmops.AttrBits(nvWant), ErrReadback)
	}
	if !a.Written || !a.WriteLocked {
		return info, fmt.Errorf("%s: attributes 0x%08x: not written and write-locked: %w", n.where(), tpmops.AttrBits(a), ErrReadback)
	}
	if info.Size != len(der) {
		return info, fmt.Errorf("%s: index of %d bytes, certificate of %d: %w", n.where(), info.Size, len(der), ErrReadback)
	}
	got, err := n.nv.NVRead(n.index)
	if err != nil {
		return info, fmt.Errorf("%s: NV_Read: %v: %w", n.where(), err, ErrReadback)
	}
	if !bytes.Equal(got, der) {
		return info, fmt.Errorf("%s: NV_Read returned %d bytes that differ from the certificate: %w", n.where(), len(got), ErrReadback)
	}
	return info, nil
}

func (n *nvTarget) ReadBack(_ context.Context, j Job) error {
	var der []byte
	if j.Bundle != nil {
		der = j.Bundle.CertDER()
	}
	if len(der) == 0 {
		return fmt.Errorf("%s: no certificate to compare with: %w", n.where(), ErrReadback)
	}
	_, err := n.check(der)
	return err
}
