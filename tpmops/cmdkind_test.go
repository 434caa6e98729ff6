package tpmops

import (
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// The statistics name each command the TPM was really sent, with the key
// type for the commands that create keys.
func TestStatsByKind(t *testing.T) {
	e := &env{name: "sim"}
	openChecked(t, e, "sim")
	before := e.tpm.Stats()
	if _, _, err := e.tpm.EnsureEK(RSA2048, nil); err != nil {
		t.Fatal(err)
	}
	srk, _, err := e.tpm.EnsureSRK(ECCP256, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.tpm.CreateDeviceKey(srk); err != nil {
		t.Fatal(err)
	}
	if err := e.tpm.NVDefineWrite(0x01500001, []byte("hello"), nil, NVAttrs{}); err != nil {
		t.Fatal(err)
	}
	ek, err := e.tpm.ReadPublic(EKHandleRSA)
	if err != nil {
		t.Fatal(err)
	}
	auth := []byte("station-test-owner-auth")
	if err := e.tpm.ChangeAuth(Owner, nil, auth, ek); err != nil { // a session salted to the RSA EK
		t.Fatal(err)
	}
	if err := e.tpm.ProveAuth(Owner, auth, srk); err != nil { // one salted to the ECC SRK
		t.Fatal(err)
	}
	d := e.tpm.Stats().Since(before)
	for k, want := range map[CommandKind]int{
		CreatePrimaryRSA: 1,
		{tpm2.TPMCCCreatePrimary, tpm2.TPMAlgECC}:    1,
		{tpm2.TPMCCCreate, tpm2.TPMAlgECC}:           1,
		{Code: tpm2.TPMCCEvictControl}:               2,
		{Code: tpm2.TPMCCNVWrite}:                    1,
		{Code: tpm2.TPMCCNVDefineSpace}:              1,
		{tpm2.TPMCCStartAuthSession, tpm2.TPMAlgRSA}: 1,
		{tpm2.TPMCCStartAuthSession, tpm2.TPMAlgECC}: 1,
	} {
		if got := d.Count(k); got != want {
			t.Errorf("%v: %d commands, want %d (all: %v)", k, got, want, d.ByKind)
		}
	}
	total := 0
	for _, v := range d.ByKind {
		total += v.Commands
	}
	if total != d.Commands {
		t.Errorf("by kind %d commands, in all %d", total, d.Commands)
	}
}

func TestCommandKindString(t *testing.T) {
	for k, want := range map[CommandKind]string{
		CreatePrimaryRSA:                         "CreatePrimary(RSA)",
		{tpm2.TPMCCCreate, tpm2.TPMAlgKeyedHash}: "Create(KEYEDHASH)",
		{Code: tpm2.TPMCCNVWrite}:                "NV_Write",
		{Code: 0x19a}:                            "CC 0x0000019a",
		{tpm2.TPMCCCreate, 0x99}:                 "Create(alg 0x0099)",
	} {
		if got := k.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", k, got, want)
		}
	}
}

// KindOf reads bytes it is handed; whatever they are, it must not panic.
func FuzzKindOf(f *testing.F) {
	f.Add([]byte{})
	f.Add(tpm2.Marshal(tpm2.New2B(tpm2.RSAEKTemplate)))
	f.Add([]byte{0x80, 0x02, 0, 0, 0, 0x20, 0, 0, 0x01, 0x31, 0x40, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x80, 0x02, 0, 0, 0, 0x20, 0, 0, 0x01, 0x31, 0x40, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = KindOf(b).String()
	})
}
