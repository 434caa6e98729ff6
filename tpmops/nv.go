package tpmops

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// NVAttrs chooses the optional behaviour of an owner NV index written by
// NVDefineWrite. The index is always OWNERWRITE|OWNERREAD|AUTHREAD|NO_DA with
// an empty index auth: anyone may read it (it holds public data such as a
// device certificate), only the owner may write it.
type NVAttrs struct {
	// WriteLock defines the index with WRITEDEFINE and locks it after the
	// write: it cannot be written again until it is undefined (owner auth).
	WriteLock bool
}

// NVPublicInfo describes a defined NV index.
type NVPublicInfo struct {
	Index uint32
	Attrs tpm2.TPMANV
	Size  int
	Name  []byte // TPM2B_NAME contents
}

// nvPublic is what NVPublic reads plus the handle for commands on the index.
func (t *TPM) nvPublic(index uint32) (NVPublicInfo, tpm2.NamedHandle, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(t.tr)
	if err != nil {
		if isHandleErr(err) {
			return NVPublicInfo{}, tpm2.NamedHandle{}, fmt.Errorf("NV index %#x: %w", index, ErrHandleEmpty)
		}
		return NVPublicInfo{}, tpm2.NamedHandle{}, fmt.Errorf("reading NV public of %#x: %w", index, classify(err))
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return NVPublicInfo{}, tpm2.NamedHandle{}, fmt.Errorf("decoding NV public of %#x: %w", index, err)
	}
	info := NVPublicInfo{Index: index, Attrs: pub.Attributes, Size: int(pub.DataSize), Name: rsp.NVName.Buffer}
	return info, tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: rsp.NVName}, nil
}

// NVPublic returns an NV index's attributes and size; ErrHandleEmpty when the
// index is not defined.
func (t *TPM) NVPublic(index uint32) (NVPublicInfo, error) {
	info, _, err := t.nvPublic(index)
	return info, err
}

// NVMaxSize returns TPM_PT_NV_INDEX_MAX, the largest NV index the TPM allows.
func (t *TPM) NVMaxSize() (int, error) {
	v, err := t.property(tpm2.TPMPTNVIndexMax)
	return int(v), err
}

// nvBufferMax returns TPM_PT_NV_BUFFER_MAX (the largest NV read/write), cached.
func (t *TPM) nvBufferMax() (int, error) {
	if t.nvBufMax > 0 {
		return t.nvBufMax, nil
	}
	v, err := t.property(tpm2.TPMPTNVBufferMax)
	if err != nil {
		return 0, err
	}
	if v == 0 {
		v = 512 // TPM_PT_NV_BUFFER_MAX is mandatory; be safe anyway
	}
	t.nvBufMax = int(v)
	return t.nvBufMax, nil
}

// NVDefineWrite writes data into the owner NV index (defining it when it is
// absent). An index already defined with the size of data is rewritten; one
// of another size that this package's attributes describe is undefined and
// defined again. A write-locked index that already holds exactly data is
// accepted (idempotent re-run); holding anything else it is an error.
// The data is written in chunks of TPM_PT_NV_BUFFER_MAX, then locked when
// attrs.WriteLock.
func (t *TPM) NVDefineWrite(index uint32, data []byte, ownerAuth []byte, attrs NVAttrs) error {
	if tpm2.TPMHandle(index)>>24 != tpm2.TPMHandle(tpm2.TPMHTNVIndex) {
		return fmt.Errorf("%#x is not an NV index handle", index)
	}
	if len(data) == 0 {
		return fmt.Errorf("writing NV index %#x: no data", index)
	}
	max, err := t.NVMaxSize()
	if err != nil {
		return err
	}
	if len(data) > max {
		return fmt.Errorf("writing NV index %#x: %d bytes exceed the TPM's NV index maximum of %d", index, len(data), max)
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(ownerAuth)}
	info, nh, err := t.nvPublic(index)
	switch {
	case errors.Is(err, ErrHandleEmpty):
		nh, err = t.nvDefine(owner, index, len(data), attrs)
		if err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		a := info.Attrs
		if a.WriteLocked {
			if a.Written {
				if got, rerr := t.NVRead(index); rerr == nil && bytes.Equal(got, data) {
					return nil
				}
			}
			return fmt.Errorf("NV index %#x is write-locked with other contents (undefine it with owner auth to rewrite)", index)
		}
		if !stationIndex(a) {
			return fmt.Errorf("NV index %#x: %w (an index this station did not define)", index, ErrForeignKey)
		}
		if info.Size != len(data) || a.WriteDefine != attrs.WriteLock {
			if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: nh}).Execute(t.tr); err != nil {
				return fmt.Errorf("undefining NV index %#x to resize it: %w", index, classify(err))
			}
			nh, err = t.nvDefine(owner, index, len(data), attrs)
			if err != nil {
				return err
			}
		}
	}
	if err := t.nvWriteChunks(owner, nh, data); err != nil {
		return fmt.Errorf("writing NV index %#x: %w", index, err)
	}
	if attrs.WriteLock {
		// Name changes once written: re-read it for the lock's name check.
		_, nh, err = t.nvPublic(index)
		if err != nil {
			return err
		}
		if _, err := (tpm2.NVWriteLock{AuthHandle: owner, NVIndex: nh}).Execute(t.tr); err != nil {
			return fmt.Errorf("write-locking NV index %#x: %w", index, classify(err))
		}
	}
	return nil
}

// stationIndex reports whether an NV index has exactly the attributes
// NVDefineWrite gives its indices (OWNERWRITE|OWNERREAD|AUTHREAD|NO_DA,
// ordinary, WRITEDEFINE optional), whatever its state (written, locked).
// Any other index is someone else's, and station never rewrites or removes it.
func stationIndex(a tpm2.TPMANV) bool {
	a.Written, a.WriteLocked, a.ReadLocked, a.WriteDefine = false, false, false, false
	return a == tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary}
}

// NVUndefine removes an owner NV index of the kind NVDefineWrite makes (to
// replace a write-locked one). Any other index is refused with
// ErrForeignKey: station never removes what it did not create.
func (t *TPM) NVUndefine(index uint32, ownerAuth []byte) error {
	info, nh, err := t.nvPublic(index)
	if err != nil {
		return err
	}
	if !stationIndex(info.Attrs) {
		return fmt.Errorf("NV index %#x: %w (an index this station did not define)", index, ErrForeignKey)
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(ownerAuth)}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: nh}).Execute(t.tr); err != nil {
		return fmt.Errorf("undefining NV index %#x: %w", index, classify(err))
	}
	return nil
}

func (t *TPM) nvDefine(auth tpm2.AuthHandle, index uint32, size int, attrs NVAttrs) (tpm2.NamedHandle, error) {
	pub := tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(index),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite:  true,
			OwnerRead:   true,
			AuthRead:    true,
			NoDA:        true,
			WriteDefine: attrs.WriteLock,
			NT:          tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(size),
	}
	return t.nvDefineSpace(auth, pub)
}

func (t *TPM) nvDefineSpace(auth tpm2.AuthHandle, pub tpm2.TPMSNVPublic) (tpm2.NamedHandle, error) {
	_, err := tpm2.NVDefineSpace{AuthHandle: auth, PublicInfo: tpm2.New2B(pub)}.Execute(t.tr)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("defining NV index %#x: %w", uint32(pub.NVIndex), classify(err))
	}
	_, nh, err := t.nvPublic(uint32(pub.NVIndex))
	return nh, err
}

func (t *TPM) nvWriteChunks(auth tpm2.AuthHandle, nh tpm2.NamedHandle, data []byte) error {
	chunk, err := t.nvBufferMax()
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		_, err := tpm2.NVWrite{
			AuthHandle: auth,
			NVIndex:    nh,
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]},
			Offset:     uint16(off),
		}.Execute(t.tr)
		if err != nil {
			return fmt.Errorf("at offset %d: %w", off, classify(err))
		}
		if off == 0 {
			// The first write sets TPMA_NV_WRITTEN, which changes the Name
			// later commands must carry.
			if _, nh, err = t.nvPublic(uint32(nh.Handle)); err != nil {
				return err
			}
		}
	}
	return nil
}

// NVRead reads a whole NV index in chunks: with the index's own (empty) auth
// when it is AUTHREAD, else with an empty owner password when OWNERREAD.
// An undefined or never-written index wraps ErrHandleEmpty.
func (t *TPM) NVRead(index uint32) ([]byte, error) {
	info, nh, err := t.nvPublic(index)
	if err != nil {
		return nil, err
	}
	if !info.Attrs.Written {
		return nil, fmt.Errorf("NV index %#x is defined but not written: %w", index, ErrHandleEmpty)
	}
	var auth tpm2.AuthHandle
	switch {
	case info.Attrs.AuthRead:
		auth = tpm2.AuthHandle{Handle: nh.Handle, Name: nh.Name, Auth: tpm2.PasswordAuth(nil)}
	case info.Attrs.OwnerRead:
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	default:
		return nil, fmt.Errorf("NV index %#x is neither AUTHREAD nor OWNERREAD", index)
	}
	chunk, err := t.nvBufferMax()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, info.Size)
	for off := 0; off < info.Size; off += chunk {
		n := min(chunk, info.Size-off)
		rsp, err := tpm2.NVRead{AuthHandle: auth, NVIndex: nh, Size: uint16(n), Offset: uint16(off)}.Execute(t.tr)
		if err != nil {
			return nil, fmt.Errorf("reading NV index %#x at offset %d: %w", index, off, classify(err))
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, nil
}

// ProvisionEKCert writes der into the standard EK certificate NV index for
// alg (0x01C00002 RSA-2048, 0x01C0000A ECC P-256, 0x01C00016 ECC P-384) the way a manufacturer does: defined
// with platform authorization (empty, as on the simulator) and attributes
// PPWRITE|PPREAD|OWNERREAD|AUTHREAD|NO_DA|PLATFORMCREATE. For demos and tests
// on TPMs that ship without a certificate. An index that already holds der
// is left alone; one holding anything else is an error.
func (t *TPM) ProvisionEKCert(alg Alg, der []byte) error {
	idx, err := ekCertIndices(alg)
	if err != nil {
		return err
	}
	index := idx[0]
	if _, err := UnwrapEKCert(der); err != nil {
		return fmt.Errorf("EK certificate to provision: %w", err)
	}
	if max, err := t.NVMaxSize(); err != nil {
		return err
	} else if len(der) > max {
		return fmt.Errorf("EK certificate of %d bytes exceeds the TPM's NV index maximum of %d", len(der), max)
	}
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	info, _, err := t.nvPublic(index)
	var nh tpm2.NamedHandle
	switch {
	case errors.Is(err, ErrHandleEmpty):
		nh, err = t.nvDefineSpace(platform, tpm2.TPMSNVPublic{
			NVIndex: tpm2.TPMHandle(index),
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				PPWrite:        true,
				PPRead:         true,
				OwnerRead:      true,
				AuthRead:       true,
				NoDA:           true,
				PlatformCreate: true,
				NT:             tpm2.TPMNTOrdinary,
			},
			DataSize: uint16(len(der)),
		})
		if err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if info.Attrs.Written {
			if got, rerr := t.NVRead(index); rerr == nil && bytes.Equal(got, der) {
				return nil
			}
		}
		return fmt.Errorf("NV index %#x already holds another EK certificate", index)
	}
	if err := t.nvWriteChunks(platform, nh, der); err != nil {
		return fmt.Errorf("writing EK certificate to NV %#x: %w", index, err)
	}
	return nil
}
