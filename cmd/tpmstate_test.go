package cmd

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/tpmops"
)

// tpmState is what a TPM holds and reports, read with commands that change
// nothing (GetCapability, ReadPublic, NV_ReadPublic), the way tpm2-tools'
// getcap, readpublic and nvreadpublic would show it. A step refused "before
// the TPM is touched", or a read-only command, must leave it equal.
type tpmState struct {
	Persistent []tpm2.TPMHandle // persistent objects (0x81...)
	Transient  []tpm2.TPMHandle // loaded objects (0x80...) and sessions (0x02..., 0x03...)
	NV         []tpm2.TPMHandle // NV indices (0x01...)
	// Public holds each persistent object's TPM2B_PUBLIC and each NV
	// index's TPM2B_NV_PUBLIC (attributes, written bit, size, policy).
	Public map[tpm2.TPMHandle][]byte
	// Variable holds every TPM_PT_VAR property: the permanent and
	// startup-clear bits (auths set, lockout), handle and NV counts, the
	// dictionary-attack counter and parameters.
	Variable map[tpm2.TPMPT]uint32
}

// readTPMState reads the TPM at addr (which must not be in use).
func readTPMState(t testing.TB, addr string) tpmState {
	t.Helper()
	tp := openTPM(t, addr)
	defer tp.Close()
	tr := tp.Transport()
	var err error
	s := tpmState{Public: map[tpm2.TPMHandle][]byte{}, Variable: map[tpm2.TPMPT]uint32{}}
	if s.Persistent, err = tp.Persistent(); err != nil {
		t.Fatal(err)
	}
	if s.Transient, err = tp.Transients(); err != nil {
		t.Fatal(err)
	}
	s.NV = listHandles(t, tr, tpm2.TPMHTNVIndex)
	for _, h := range s.Persistent {
		rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tr)
		if err != nil {
			t.Fatalf("ReadPublic %#x: %v", uint32(h), err)
		}
		s.Public[h] = tpm2.Marshal(rsp.OutPublic)
	}
	for _, h := range s.NV {
		rsp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(tr)
		if err != nil {
			t.Fatalf("NV_ReadPublic %#x: %v", uint32(h), err)
		}
		s.Public[h] = tpm2.Marshal(rsp.NVPublic)
	}
	next := uint32(tpm2.TPMPTPermanent) // the first TPM_PT_VAR property
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: next, PropertyCount: 64}.Execute(tr)
		if err != nil {
			t.Fatalf("GetCapability(TPM_PT_VAR): %v", err)
		}
		props, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range props.TPMProperty {
			s.Variable[p.Property] = p.Value
		}
		if !rsp.MoreData || len(props.TPMProperty) == 0 {
			break
		}
		next = uint32(props.TPMProperty[len(props.TPMProperty)-1].Property) + 1
	}
	if _, ok := s.Variable[tpm2.TPMPTPermanent]; !ok {
		t.Fatal("the TPM reports no TPM_PT_PERMANENT")
	}
	return s
}

// listHandles lists the handles of one type.
func listHandles(t testing.TB, tr transport.TPM, ht tpm2.TPMHT) []tpm2.TPMHandle {
	t.Helper()
	var out []tpm2.TPMHandle
	next := uint32(ht) << 24
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: next, PropertyCount: 64}.Execute(tr)
		if err != nil {
			t.Fatalf("GetCapability(handles %#x): %v", uint8(ht), err)
		}
		hl, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hl.Handle {
			if uint32(h)>>24 != uint32(ht) {
				return out
			}
			out = append(out, h)
		}
		if !rsp.MoreData || len(hl.Handle) == 0 {
			return out
		}
		next = uint32(hl.Handle[len(hl.Handle)-1]) + 1
	}
}

// diff says how o differs from s ("" when it does not).
func (s tpmState) diff(o tpmState) string {
	for _, l := range []struct {
		what    string
		was, is []tpm2.TPMHandle
	}{{"persistent handles", s.Persistent, o.Persistent}, {"transient handles and sessions", s.Transient, o.Transient}, {"NV indices", s.NV, o.NV}} {
		if !slices.Equal(l.was, l.is) {
			return fmt.Sprintf("%s %#x, now %#x", l.what, l.was, l.is)
		}
	}
	for _, h := range slices.Sorted(maps.Keys(s.Public)) {
		if !bytes.Equal(s.Public[h], o.Public[h]) {
			return fmt.Sprintf("the public area of %#x changed", uint32(h))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(s.Variable)) {
		if v, ok := o.Variable[p]; !ok || v != s.Variable[p] {
			return fmt.Sprintf("TPM property %#x was %#x, now %#x", uint32(p), s.Variable[p], v)
		}
	}
	if len(o.Variable) != len(s.Variable) {
		return fmt.Sprintf("the TPM reports %d variable properties, was %d", len(o.Variable), len(s.Variable))
	}
	return ""
}

// TestTPMStateSeesEveryChange: readTPMState is what the "nothing changed"
// assertions rest on, so it must see each kind of change they guard
// against, and see none once the change is undone.
func TestTPMStateSeesEveryChange(t *testing.T) {
	needLinux(t)
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	before := readTPMState(t, inst.Addr)
	if len(before.Persistent) == 0 || len(before.NV) == 0 {
		t.Fatalf("a manufactured swtpm holds its EK and EK certificate: %+v", before)
	}
	const (
		keyHandle = tpm2.TPMHandle(0x81000123)
		nvIndex   = tpm2.TPMHandle(0x01500123)
	)
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	var loaded tpm2.TPMHandle
	steps := []struct {
		name   string
		change func(tp *tpmops.TPM) error
		want   string                     // what diff names
		undo   func(tp *tpmops.TPM) error // nil: the last change, not undone
	}{
		{"loaded object", func(tp *tpmops.TPM) error {
			tr := tp.Transport()
			rsp, err := tpm2.CreatePrimary{PrimaryHandle: owner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tr)
			if err == nil {
				loaded = rsp.ObjectHandle
			}
			return err
		}, "transient handles", func(tp *tpmops.TPM) error {
			tr := tp.Transport()
			_, err := tpm2.FlushContext{FlushHandle: loaded}.Execute(tr)
			return err
		}},
		{"persistent key", func(tp *tpmops.TPM) error {
			tr := tp.Transport()
			rsp, err := tpm2.CreatePrimary{PrimaryHandle: owner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tr)
			if err != nil {
				return err
			}
			defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tr)
			_, err = tpm2.EvictControl{Auth: owner, ObjectHandle: tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, PersistentHandle: keyHandle}.Execute(tr)
			return err
		}, "persistent handles", func(tp *tpmops.TPM) error {
			tr := tp.Transport()
			pub, err := tpm2.ReadPublic{ObjectHandle: keyHandle}.Execute(tr)
			if err != nil {
				return err
			}
			_, err = tpm2.EvictControl{Auth: owner, ObjectHandle: tpm2.NamedHandle{Handle: keyHandle, Name: pub.Name}, PersistentHandle: keyHandle}.Execute(tr)
			return err
		}},
		{"NV index", func(tp *tpmops.TPM) error {
			tr := tp.Transport()
			_, err := tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(nvPublic(nvIndex))}.Execute(tr)
			return err
		}, "NV indices", func(tp *tpmops.TPM) error { return undefineNV(tp.Transport(), owner, nvIndex) }},
		{"owner auth", func(tp *tpmops.TPM) error {
			tr := tp.Transport()
			_, err := tpm2.HierarchyChangeAuth{AuthHandle: owner, NewAuth: tpm2.TPM2BAuth{Buffer: []byte("set")}}.Execute(tr)
			return err
		}, "TPM property 0x200", func(tp *tpmops.TPM) error {
			tr := tp.Transport()
			_, err := tpm2.HierarchyChangeAuth{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth([]byte("set"))}}.Execute(tr)
			return err
		}},
		{"dictionary-attack parameters", func(tp *tpmops.TPM) error {
			return tp.SetDAParams(nil, tpmops.DAParams{MaxTries: 7, RecoverySeconds: 11, LockoutRecoverySeconds: 13})
		}, "TPM property 0x20f", nil},
	}
	withTPM := func(fn func(tp *tpmops.TPM) error) {
		t.Helper()
		tp := openTPM(t, inst.Addr)
		defer tp.Close()
		if err := fn(tp); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range steps {
		withTPM(st.change)
		d := before.diff(readTPMState(t, inst.Addr))
		if !strings.Contains(d, st.want) {
			t.Fatalf("%s: diff %q, want it to name %q", st.name, d, st.want)
		}
		if st.undo == nil {
			continue
		}
		withTPM(st.undo)
		if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
			t.Fatalf("%s undone: %s", st.name, d)
		}
	}
	// Writing an NV index changes only its public area (the written bit).
	withTPM(func(tp *tpmops.TPM) error {
		tr := tp.Transport()
		_, err := tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(nvPublic(nvIndex))}.Execute(tr)
		return err
	})
	defined := readTPMState(t, inst.Addr)
	withTPM(func(tp *tpmops.TPM) error {
		tr := tp.Transport()
		_, err := tpm2.NVWrite{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: nvIndex, Name: nvName(t, tr, nvIndex)},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: []byte{1, 2, 3, 4}}}.Execute(tr)
		return err
	})
	if d := defined.diff(readTPMState(t, inst.Addr)); !strings.Contains(d, "public area of 0x1500123") {
		t.Fatalf("NV write: diff %q", d)
	}
}

func nvPublic(index tpm2.TPMHandle) tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{NVIndex: index, NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NT: tpm2.TPMNTOrdinary}, DataSize: 4}
}

func nvName(t testing.TB, tr transport.TPM, index tpm2.TPMHandle) tpm2.TPM2BName {
	t.Helper()
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	return rsp.NVName
}

func undefineNV(tr transport.TPM, owner tpm2.AuthHandle, index tpm2.TPMHandle) error {
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tr)
	if err != nil {
		return err
	}
	_, err = tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: index, Name: rsp.NVName}}.Execute(tr)
	return err
}
