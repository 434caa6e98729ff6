package flash

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/bundletest"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/tpmops"
)

// nvEnv is one real TPM (the simulator, or a swtpm) under test.
type nvEnv struct {
	name string
	tpm  *tpmops.TPM
	sw   *swtpmtest.Instance
}

func (e *nvEnv) dev() NVDevice { return e.tpm }

func (e *nvEnv) target(t *testing.T) Target {
	t.Helper()
	return openOne(t, "tpm-nv", configs.Flash{NVIndex: DefaultNVIndex}, e.dev())
}

// tool runs a tpm2-tools command against the swtpm (closing our connection
// meanwhile: swtpm serves one at a time).
func (e *nvEnv) tool(t *testing.T, name string, args ...string) ([]byte, error) {
	t.Helper()
	if e.sw == nil {
		t.Fatalf("%s needs swtpm", name)
	}
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
	if err := e.tpm.Close(); err != nil {
		t.Fatal(err)
	}
	tcti := "swtpm:host=127.0.0.1,port=" + strings.TrimPrefix(e.sw.Addr, "swtpm://127.0.0.1:")
	out, err := exec.Command(name, append(args, "-T", tcti)...).CombinedOutput()
	tp, oerr := tpmops.Open(e.sw.Addr)
	if oerr != nil {
		t.Fatal(oerr)
	}
	e.tpm = tp
	return out, err
}

// eachNV runs fn on the simulator and on a fresh swtpm, one after the other
// (one simulator per process), and checks no transient object leaked.
func eachNV(t *testing.T, fn func(t *testing.T, e *nvEnv)) {
	t.Helper()
	run := func(t *testing.T, e *nvEnv, addr string) {
		tp, err := tpmops.Open(addr)
		if err != nil {
			t.Fatalf("Open(%s): %v", addr, err)
		}
		e.tpm = tp
		t.Cleanup(func() {
			if hs, err := e.tpm.Transients(); err != nil || len(hs) != 0 {
				t.Errorf("transients left: %v (%v)", hs, err)
			}
			e.tpm.Close()
		})
		fn(t, e)
	}
	t.Run("sim", func(t *testing.T) { run(t, &nvEnv{name: "sim"}, "sim") })
	t.Run("swtpm", func(t *testing.T) {
		e := &nvEnv{name: "swtpm", sw: swtpmtest.Start(t, swtpmtest.Options{Blank: true})}
		run(t, e, e.sw.Addr)
	})
}

func TestNVWriteReadBack(t *testing.T) {
	f := newFixture(t)
	eachNV(t, func(t *testing.T, e *nvEnv) {
		tg := e.target(t)
		j := f.job(t, "SN-0300")
		der := j.Bundle.CertDER()
		res, err := tg.Write(context.Background(), j)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %v", e.name, res.Detail)
		if res.Detail["nv_index"] != "0x01500010" || res.Detail["nv_write"] != "defined, written, write-locked" {
			t.Errorf("detail: %v", res.Detail)
		}
		info, err := e.tpm.NVPublic(DefaultNVIndex)
		if err != nil {
			t.Fatal(err)
		}
		a := info.Attrs
		if !a.OwnerWrite || a.AuthWrite || a.PPWrite || a.PolicyWrite || !a.WriteDefine || !a.WriteLocked || !a.Written || info.Size != len(der) {
			t.Errorf("index public area: %+v", info)
		}
		if err := tg.ReadBack(context.Background(), j); err != nil {
			t.Errorf("ReadBack: %v", err)
		}
		// Re-running provision for the same unit: nothing to do, still fine.
		res, err = tg.Write(context.Background(), j)
		if err != nil || res.Detail["nv_write"] != "already held this certificate, locked" {
			t.Errorf("re-run: %v %v", err, res.Detail)
		}
		if e.sw == nil {
			return
		}
		// An independent reader (tpm2-tools) sees the same certificate, with
		// the index's auth and with the owner's.
		for _, auth := range []string{"0x01500010", "o"} {
			out := filepath.Join(t.TempDir(), "cert.der")
			if o, err := e.tool(t, "tpm2_nvread", "-C", auth, "-o", out, "0x01500010"); err != nil {
				t.Fatalf("tpm2_nvread -C %s: %v\n%s", auth, err, o)
			}
			got, _ := os.ReadFile(out)
			if !bytes.Equal(got, der) {
				t.Fatalf("tpm2_nvread -C %s: %d bytes differ from the certificate", auth, len(got))
			}
		}
		pub, err := e.tool(t, "tpm2_nvreadpublic", "0x01500010")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"ownerwrite", "writelocked", "writedefine", "written", "authread", "ownerread", "no_da"} {
			if !strings.Contains(string(pub), w) {
				t.Errorf("tpm2_nvreadpublic lacks %s:\n%s", w, pub)
			}
		}
		// Locked: the owner cannot overwrite it in place.
		junk := filepath.Join(t.TempDir(), "junk")
		os.WriteFile(junk, bytes.Repeat([]byte{0xee}, 16), 0o600)
		if o, err := e.tool(t, "tpm2_nvwrite", "-C", "o", "-i", junk, "0x01500010"); err == nil {
			t.Fatalf("tpm2_nvwrite overwrote a locked index:\n%s", o)
		}
		if err := e.target(t).ReadBack(context.Background(), j); err != nil {
			t.Errorf("ReadBack after the refused overwrite: %v", err)
		}
	})
}

func TestNVOtherUnitAndReissue(t *testing.T) {
	f := newFixture(t)
	eachNV(t, func(t *testing.T, e *nvEnv) {
		tg := e.target(t)
		ja := f.job(t, "SN-A")
		if _, err := tg.Write(context.Background(), ja); err != nil {
			t.Fatal(err)
		}
		jb := f.job(t, "SN-B")
		if _, err := tg.Write(context.Background(), jb); !errors.Is(err, ErrOtherUnit) {
			t.Fatalf("got %v, want ErrOtherUnit", err)
		}
		if err := tg.ReadBack(context.Background(), ja); err != nil {
			t.Fatalf("the refused write changed the index: %v", err)
		}
		// QA with the other unit's bundle fails.
		if err := tg.ReadBack(context.Background(), jb); !errors.Is(err, ErrReadback) {
			t.Fatalf("ReadBack of the wrong unit: %v", err)
		}
		// This unit's certificate re-issued: the locked index is replaced.
		ja2 := f.job(t, "SN-A")
		if bytes.Equal(ja2.Bundle.CertDER(), ja.Bundle.CertDER()) {
			t.Fatal("test needs a new certificate")
		}
		if _, err := tg.Write(context.Background(), ja2); err != nil {
			t.Fatalf("re-issued certificate: %v", err)
		}
		if err := tg.ReadBack(context.Background(), ja2); err != nil {
			t.Fatal(err)
		}
		jb.Force = true
		if _, err := tg.Write(context.Background(), jb); err != nil {
			t.Fatalf("forced: %v", err)
		}
		if err := tg.ReadBack(context.Background(), jb); err != nil {
			t.Fatal(err)
		}
	})
}

// An index someone else defined (other data, other attributes) is not ours
// to delete.
func TestNVForeignIndex(t *testing.T) {
	f := newFixture(t)
	eachNV(t, func(t *testing.T, e *nvEnv) {
		foreign := []byte("another application's settings")
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex: DefaultNVIndex, NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{AuthWrite: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
				DataSize:   uint16(len(foreign)),
			}),
		}.Execute(e.tpm.Transport())
		if err != nil {
			t.Fatal(err)
		}
		rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(DefaultNVIndex)}.Execute(e.tpm.Transport())
		if err != nil {
			t.Fatal(err)
		}
		nh := tpm2.AuthHandle{Handle: DefaultNVIndex, Name: rsp.NVName, Auth: tpm2.PasswordAuth(nil)}
		if _, err := (tpm2.NVWrite{AuthHandle: nh, NVIndex: tpm2.NamedHandle{Handle: DefaultNVIndex, Name: rsp.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: foreign}}).Execute(e.tpm.Transport()); err != nil {
			t.Fatal(err)
		}
		tg := e.target(t)
		j := f.job(t, "SN-0301")
		if _, err := tg.Write(context.Background(), j); !errors.Is(err, ErrOtherUnit) {
			t.Fatalf("got %v, want ErrOtherUnit", err)
		}
		if got, _ := e.tpm.NVRead(DefaultNVIndex); !bytes.Equal(got, foreign) {
			t.Fatal("the foreign index was changed")
		}
		// QA notices such an index is not a locked owner-only certificate.
		if err := tg.ReadBack(context.Background(), j); !errors.Is(err, ErrReadback) {
			t.Fatalf("ReadBack: %v", err)
		}
	})
}

// defineRaw defines, writes and optionally locks an owner index with any
// attributes, straight through go-tpm (as some other tool would).
func defineRaw(t *testing.T, e *nvEnv, attrs tpm2.TPMANV, data []byte, lock bool) {
	t.Helper()
	tr := e.tpm.Transport()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	attrs.NT = tpm2.TPMNTOrdinary
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(DefaultNVIndex), NameAlg: tpm2.TPMAlgSHA256, Attributes: attrs, DataSize: uint16(len(data)),
	})}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	name := func() tpm2.NamedHandle {
		rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(DefaultNVIndex)}.Execute(tr)
		if err != nil {
			t.Fatal(err)
		}
		return tpm2.NamedHandle{Handle: tpm2.TPMHandle(DefaultNVIndex), Name: rsp.NVName}
	}
	auth := owner
	if !attrs.OwnerWrite {
		nh := name()
		auth = tpm2.AuthHandle{Handle: nh.Handle, Name: nh.Name, Auth: tpm2.PasswordAuth(nil)}
	}
	if _, err := (tpm2.NVWrite{AuthHandle: auth, NVIndex: name(), Data: tpm2.TPM2BMaxNVBuffer{Buffer: data}}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	if lock {
		if _, err := (tpm2.NVWriteLock{AuthHandle: auth, NVIndex: name()}).Execute(tr); err != nil {
			t.Fatal(err)
		}
	}
}

// The QA check requires exactly tpm-nv's attributes, written and locked:
// each way an index holding the right certificate can fall short fails it,
// and Write replaces such an index (same unit's certificate).
func TestNVWeakIndexFailsCheck(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		attrs tpm2.TPMANV
		lock  bool
		// foreign: station could not have made it, so it is never removed.
		foreign bool
	}{
		{"not write-locked", nvWant, false, false},
		{"no write-define", func() tpm2.TPMANV { a := nvWant; a.WriteDefine = false; return a }(), false, false},
		{"auth-writable and locked", func() tpm2.TPMANV { a := nvWant; a.AuthWrite = true; return a }(), true, true},
		{"no owner read", func() tpm2.TPMANV { a := nvWant; a.OwnerRead = false; return a }(), true, true},
		{"dictionary-attack protected", func() tpm2.TPMANV { a := nvWant; a.NoDA = false; return a }(), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachNV(t, func(t *testing.T, e *nvEnv) {
				j := f.job(t, "SN-0302")
				defineRaw(t, e, tc.attrs, j.Bundle.CertDER(), tc.lock)
				tg := e.target(t)
				if err := tg.ReadBack(context.Background(), j); !errors.Is(err, ErrReadback) {
					t.Fatalf("weak index passed: %v", err)
				}
				if tc.foreign {
					if _, err := tg.Write(context.Background(), j); !errors.Is(err, tpmops.ErrForeignKey) {
						t.Fatalf("Write over an index station could not have made = %v, want ErrForeignKey", err)
					}
					if _, err := e.tpm.NVPublic(DefaultNVIndex); err != nil {
						t.Fatalf("the foreign index was removed: %v", err)
					}
					return
				}
				if _, err := tg.Write(context.Background(), j); err != nil {
					t.Fatal(err)
				}
				if err := tg.ReadBack(context.Background(), j); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestNVTooLarge(t *testing.T) {
	f := newFixture(t)
	eachNV(t, func(t *testing.T, e *nvEnv) {
		max, err := e.tpm.NVMaxSize()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: TPM_PT_NV_INDEX_MAX = %d", e.name, max)
		b := f.PKI.BaseBundle(t, "SN-0303")
		b.CertPEM = bigLeaf(t, f.PKI, b.RegistrationID, max+1)
		j := Job{Serial: "SN-0303", Firmware: f.fw, Bundle: bundletest.Signed(t, b, f.Key)}
		if _, err := e.target(t).Write(context.Background(), j); !errors.Is(err, ErrNVTooLarge) {
			t.Fatalf("got %v, want ErrNVTooLarge", err)
		}
		if _, err := e.tpm.NVPublic(DefaultNVIndex); !errors.Is(err, tpmops.ErrHandleEmpty) {
			t.Fatalf("something was defined: %v", err)
		}
	})
}

// bigLeaf issues a leaf of at least size bytes (a padding extension).
func bigLeaf(t *testing.T, p *bundletest.PKI, cn string, size int) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pad, _ := asn1.Marshal(bytes.Repeat([]byte{'p'}, size))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}, Value: pad}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Inter, k.Public(), p.InterKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// lyingNV passes every call to a real TPM but corrupts what NV_Read returns
// (a bad bus, a TPM that does not keep what it was given).
type lyingNV struct{ NVDevice }

func (l lyingNV) NVRead(index uint32) ([]byte, error) {
	b, err := l.NVDevice.NVRead(index)
	if len(b) > 0 {
		b[len(b)/2] ^= 0x04
	}
	return b, err
}

func TestNVReadbackMismatch(t *testing.T) {
	f := newFixture(t)
	eachNV(t, func(t *testing.T, e *nvEnv) {
		tg := openOne(t, "tpm-nv", configs.Flash{}, lyingNV{e.dev()})
		if _, err := tg.Write(context.Background(), f.job(t, "SN-0304")); !errors.Is(err, ErrReadback) {
			t.Fatalf("got %v, want ErrReadback", err)
		}
	})
}

func TestNVIndexRange(t *testing.T) {
	for _, idx := range []configs.Handle{0x01c00002, 0x81000001, 0x00ffffff} {
		if _, err := Open("tpm-nv", configs.Flash{NVIndex: idx}, lyingNV{}); err == nil {
			t.Errorf("index %v accepted", idx)
		}
	}
}

func TestNVReadBackFromRecord(t *testing.T) {
	f := newFixture(t)
	eachNV(t, func(t *testing.T, e *nvEnv) {
		tg := e.target(t)
		j := f.job(t, "SN-0801")
		if _, err := tg.Write(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		exp, err := credbundle.Expected(credbundle.Recorded{Serial: "SN-0801", Digest: j.Bundle.DigestHex(), CertDER: j.Bundle.CertDER()})
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.ReadBack(context.Background(), Job{Serial: "SN-0801", Bundle: exp}); err != nil {
			t.Fatal(err)
		}
	})
}

// The whole flash step on one unit: dir, exec and tpm-nv from one list.
func TestAllTargets(t *testing.T) {
	f := newFixture(t)
	tp, err := tpmops.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	r := newRig(t, "echo") // the tool prints what it writes: nothing secret may reach the record
	root := t.TempDir()
	cfg := configs.Flash{Tools: map[string]configs.FlashTool{"ff": r.tool}}
	ts, err := Open("dir:"+root+", exec:ff, tpm-nv", cfg, tp)
	if err != nil {
		t.Fatal(err)
	}
	sealed := append(append([]byte{0, 16}, bytes.Repeat([]byte{0x11}, 16)...), append([]byte{0, 24}, bytes.Repeat([]byte{0x22}, 24)...)...)
	b := f.PKI.BaseBundle(t, "SN-0900")
	b.Attestation, b.SealedKey = credbundle.AttestSymmetricKey, sealed
	j := Job{Serial: "SN-0900", Firmware: f.fw, Bundle: bundletest.Signed(t, b, f.Key), StationKey: f.Key.Public()}
	for _, tg := range ts {
		res, err := tg.Write(context.Background(), j)
		if err != nil {
			t.Fatalf("%s: %v", tg.Name(), err)
		}
		for k, v := range res.Detail {
			bundletest.AssertNoSecret(t, k+v, sealed)
		}
		if err := tg.ReadBack(context.Background(), j); err != nil {
			t.Fatalf("%s: ReadBack: %v", tg.Name(), err)
		}
	}
	if names := []string{ts[0].Name(), ts[1].Name(), ts[2].Name()}; names[0] != "dir:"+root || names[1] != "exec:ff" || names[2] != "tpm-nv" {
		t.Errorf("targets %v", names)
	}
}

// --force replaces another unit's certificate, never an index station could
// not have made: another application's data survives it.
func TestNVForceNeverRemovesForeignIndex(t *testing.T) {
	f := newFixture(t)
	eachNV(t, func(t *testing.T, e *nvEnv) {
		settings := []byte("another application's settings....")
		defineRaw(t, e, tpm2.TPMANV{OwnerWrite: true, OwnerRead: true}, settings, false)
		j := f.job(t, "SN-0303")
		j.Force = true
		if _, err := e.target(t).Write(context.Background(), j); err == nil {
			t.Fatal("--force overwrote an NV index station did not create")
		}
		got, err := e.tpm.NVRead(DefaultNVIndex)
		if err != nil || !bytes.Equal(got, settings) {
			t.Fatalf("the foreign index now holds %q (%v)", got, err)
		}
	})
}
