package tsskey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// testKey is a key file for a fresh P-256 key as a TPM would describe it
// (the device key template's attributes), with a stand-in private blob.
func testKey(t testing.TB) (Key, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := k.PublicKey.ECDH()
	b := raw.Bytes() // 0x04 || X || Y
	pub := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: b[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: b[33:]},
		}),
	}
	priv := append([]byte{0, 16}, bytes.Repeat([]byte{0xa5}, 16)...)
	return Key{EmptyAuth: true, Parent: 0x81000001, Public: tpm2.Marshal(tpm2.New2B(pub)), Private: priv}, k
}

func TestRoundTrip(t *testing.T) {
	k, priv := testKey(t)
	for _, empty := range []bool{true, false} {
		k.EmptyAuth = empty
		p, err := k.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(p, []byte("-----BEGIN TSS2 PRIVATE KEY-----\n")) {
			t.Fatalf("PEM starts %q", p[:40])
		}
		got, err := ParsePEM(p)
		if err != nil {
			t.Fatal(err)
		}
		if got.EmptyAuth != empty || got.Parent != k.Parent || !bytes.Equal(got.Public, k.Public) || !bytes.Equal(got.Private, k.Private) {
			t.Fatalf("round trip: %+v, want %+v", got, k)
		}
		pub, err := got.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		if !priv.PublicKey.Equal(pub) {
			t.Fatal("public key differs after the round trip")
		}
	}
}

// The layout is the specification's: checked field by field with a generic
// ASN.1 walk, not with this package's own struct.
func TestLayout(t *testing.T) {
	k, _ := testKey(t)
	der, err := k.MarshalDER()
	if err != nil {
		t.Fatal(err)
	}
	fields := seqFields(t, der)
	if len(fields) != 5 {
		t.Fatalf("%d fields, want type, emptyAuth, parent, pubkey, privkey", len(fields))
	}
	var oid asn1.ObjectIdentifier
	asn1.Unmarshal(fields[0].FullBytes, &oid)
	if oid.String() != "2.23.133.10.1.3" {
		t.Errorf("type %v", oid)
	}
	if f := fields[1]; f.Class != asn1.ClassContextSpecific || f.Tag != 0 || !f.IsCompound || !bytes.Equal(f.Bytes, []byte{0x01, 0x01, 0xff}) {
		t.Errorf("emptyAuth encoded as %x, want [0] EXPLICIT BOOLEAN TRUE", f.FullBytes)
	}
	if !bytes.Equal(fields[2].FullBytes, []byte{0x02, 0x05, 0x00, 0x81, 0x00, 0x00, 0x01}) {
		t.Errorf("parent encoded as %x, want INTEGER 0x81000001", fields[2].FullBytes)
	}
	if fields[3].Tag != asn1.TagOctetString || !bytes.Equal(fields[3].Bytes, k.Public) {
		t.Error("pubkey is not the TPM2B_PUBLIC as an OCTET STRING")
	}
	if fields[4].Tag != asn1.TagOctetString || !bytes.Equal(fields[4].Bytes, k.Private) {
		t.Error("privkey is not the TPM2B_PRIVATE as an OCTET STRING")
	}
	// Without emptyAuth the optional field is left out.
	k.EmptyAuth = false
	der2, _ := k.MarshalDER()
	if f := seqFields(t, der2); len(f) != 4 || f[1].Tag != asn1.TagInteger {
		t.Errorf("emptyAuth false: %d fields, want emptyAuth left out", len(f))
	}
}

// seqFields splits a DER SEQUENCE into its elements.
func seqFields(t *testing.T, der []byte) []asn1.RawValue {
	t.Helper()
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(der, &seq); err != nil || seq.Tag != asn1.TagSequence {
		t.Fatalf("not a SEQUENCE: %v", err)
	}
	var fields []asn1.RawValue
	for rest := seq.Bytes; len(rest) > 0; {
		var f asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			t.Fatal(err)
		}
		fields = append(fields, f)
	}
	return fields
}

// tpm2-pkcs11's own parser (tpm2-pytss, what tpm2_ptool link uses) reads the
// file as written.
func TestReadByPytss(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import tpm2_pytss.tsskey").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-tpm2-pytss not installed (CI=true): run scripts/deps.sh")
		}
		t.Skip("python3-tpm2-pytss not installed (scripts/deps.sh installs libtpm2-pkcs11-tools)")
	}
	k, _ := testKey(t)
	p, _ := k.MarshalPEM()
	f := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(f, p, 0o600)
	out, err := exec.Command(py, "-c", `
import sys
from tpm2_pytss.tsskey import TSSPrivKey
k = TSSPrivKey.from_pem(open(sys.argv[1], "rb").read())
print(hex(k.parent), k.empty_auth, k.public.publicArea.type, k.private.marshal().hex())
`, f).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2-pytss: %v\n%s", err, out)
	}
	want := "0x81000001 True ecc " + hex.EncodeToString(k.Private)
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("tpm2-pytss reads %q, want %q", got, want)
	}
}

func TestRefusals(t *testing.T) {
	k, _ := testKey(t)
	good, _ := k.MarshalDER()
	marshal := func(a asn1Key) []byte {
		b, err := asn1.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	base := asn1Key{Type: OIDLoadableKey, EmptyAuth: true, Parent: 0x81000001, Pubkey: k.Public, Privkey: k.Private}
	with := func(f func(*asn1Key)) []byte { a := base; f(&a); return marshal(a) }
	cases := map[string][]byte{
		"trailing":          append(bytes.Clone(good), 0),
		"truncated":         good[:len(good)-1],
		"importable OID":    with(func(a *asn1Key) { a.Type = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 4} }),
		"transient parent":  with(func(a *asn1Key) { a.Parent = 0x80000000 }),
		"negative parent":   with(func(a *asn1Key) { a.Parent = -1 }),
		"parent too large":  with(func(a *asn1Key) { a.Parent = 0x181000001 }),
		"empty pubkey":      with(func(a *asn1Key) { a.Pubkey = nil }),
		"pubkey size lies":  with(func(a *asn1Key) { a.Pubkey = append(bytes.Clone(a.Pubkey), 0) }),
		"pubkey not public": with(func(a *asn1Key) { a.Pubkey = []byte{0, 3, 1, 2, 3} }),
		"privkey size lies": with(func(a *asn1Key) { a.Privkey = a.Privkey[:len(a.Privkey)-1] }),
		"empty privkey":     with(func(a *asn1Key) { a.Privkey = []byte{0, 0} }),
	}
	// A policy ([1] EXPLICIT SEQUENCE OF) between emptyAuth and parent: a
	// valid file of the specification, but not what this package writes.
	var seq asn1.RawValue
	asn1.Unmarshal(good, &seq)
	oidLen := 2 + int(seq.Bytes[1])
	withPolicy := append(append(bytes.Clone(seq.Bytes[:oidLen+5]), 0xa1, 0x02, 0x30, 0x00), seq.Bytes[oidLen+5:]...)
	cases["policy"], _ = asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: withPolicy})
	for name, der := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseDER(der); !errors.Is(err, ErrKeyFile) {
				t.Fatalf("ParseDER accepted it (err %v)", err)
			}
		})
	}
	// Bit flips anywhere in the structure (not inside the opaque blobs) are
	// refused or change what is read: never silently the same key.
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		got, err := ParseDER(bad)
		if err == nil && got.Parent == k.Parent && bytes.Equal(got.Public, k.Public) && bytes.Equal(got.Private, k.Private) && got.EmptyAuth == k.EmptyAuth {
			t.Fatalf("flipping byte %d reads the same key", i)
		}
	}
	// PEM: another block type, headers, two blocks.
	p, _ := k.MarshalPEM()
	for name, data := range map[string][]byte{
		"private key type": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: good}),
		"headers":          pem.EncodeToMemory(&pem.Block{Type: PEMType, Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: good}),
		"two blocks":       append(bytes.Clone(p), p...),
		"not pem":          good,
	} {
		if _, err := ParsePEM(data); !errors.Is(err, ErrKeyFile) {
			t.Errorf("%s: ParsePEM accepted it (err %v)", name, err)
		}
	}
	// Writing refuses what reading would.
	k.Parent = 0x80000001
	if _, err := k.MarshalDER(); !errors.Is(err, ErrKeyFile) {
		t.Errorf("MarshalDER wrote a transient parent: %v", err)
	}
}

func FuzzParseDER(f *testing.F) {
	k, _ := testKey(f)
	good, _ := k.MarshalDER()
	f.Add(good)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := ParseDER(der)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to the same bytes.
		again, err := k.MarshalDER()
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("parsed key re-encodes differently: %v", err)
		}
	})
}
