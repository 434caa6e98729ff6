package tpmops

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
)

// tpmSnapshot is everything an inspection must leave as it found it.
type tpmSnapshot struct {
	Persistent map[tpm2.TPMHandle]string // handle -> SHA-256 of the public area
	NV         map[uint32]string         // index -> attributes, size, name
	Permanent  Permanent
	DA         DAState
	Transients []tpm2.TPMHandle
}

func snapshot(t *testing.T, tp *TPM) tpmSnapshot {
	t.Helper()
	s := tpmSnapshot{Persistent: map[tpm2.TPMHandle]string{}, NV: map[uint32]string{}}
	ps, err := tp.Persistent()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range ps {
		rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tp.tr)
		if err != nil {
			t.Fatal(err)
		}
		s.Persistent[h] = fmt.Sprintf("%x", sha256.Sum256(tpm2.Marshal(rsp.OutPublic)))
	}
	nvs, err := tp.handles(tpm2.TPMHTNVIndex)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range nvs {
		info, err := tp.NVPublic(uint32(h))
		if err != nil {
			t.Fatal(err)
		}
		s.NV[uint32(h)] = fmt.Sprintf("%+v %d %x", info.Attrs, info.Size, info.Name)
	}
	if s.Permanent, err = tp.Permanent(); err != nil {
		t.Fatal(err)
	}
	if s.DA, err = tp.DAState(); err != nil {
		t.Fatal(err)
	}
	if s.Transients, err = tp.Transients(); err != nil {
		t.Fatal(err)
	}
	return s
}

// inspectUnchanged runs Inspect and requires it to have changed nothing
// on the TPM.
func inspectUnchanged(t *testing.T, tp *TPM) *Inspection {
	t.Helper()
	before := snapshot(t, tp)
	in, err := tp.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, tp); !reflect.DeepEqual(before, after) {
		t.Fatalf("the inspection changed the TPM:\nbefore %+v\nafter  %+v", before, after)
	}
	return in
}

// foreignHandle holds a key of no template station knows (another tool's).
const foreignHandle tpm2.TPMHandle = 0x81000050

// foreignTemplate is another tool's signing key: the device key's shape
// but for a fixed ECDSA-SHA256 scheme.
func foreignTemplate() tpm2.TPMTPublic {
	tmpl := DeviceKeyTemplate
	tmpl.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	})
	return tmpl
}

// TestInspect inspects a TPM holding everything station makes (EK and its
// certificate, SRK, device key, a DPS key) plus a foreign key, and checks
// each is named, the EK certificates are matched to their keys, and
// nothing on the TPM changed.
func TestInspect(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		ek, err := e.tpm.standardEK(RSA2048)
		if err != nil {
			t.Fatal(err)
		}
		if e.sw == nil {
			// The simulator ships without a certificate: be its vendor.
			if err := e.tpm.ProvisionEKCert(RSA2048, newTestCA(t).issueEK(t, ek.Pub)); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := e.tpm.EnsureEK(RSA2048, nil); err != nil {
			t.Fatal(err)
		}
		persistDeviceKey(t, e.tpm, RSA2048)
		putKey(t, e.tpm, tpm2.TPMRHOwner, foreignTemplate(), foreignHandle)
		d, ekPub, srkPub := dpsUnit(t, e, false)
		ch, err := MakeDPSChallenge(ekPub, srkPub, newHMACKey(t))
		if err != nil {
			t.Fatal(err)
		}
		dk, err := e.tpm.ActivateDPSKey(ch, d)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = dk.Remove() })

		in := inspectUnchanged(t, e.tpm)
		if len(in.Transients) != 0 || len(in.Leaked) != 0 {
			t.Errorf("transients %v, leaked %v", in.Transients, in.Leaked)
		}
		if in.Info.Manufacturer == "" || in.Info.Family != "2.0" || in.Info.Revision == 0 {
			t.Errorf("info %+v", in.Info)
		}
		if e.sw != nil && (in.Info.Manufacturer != "IBM" || !strings.Contains(in.Info.VendorString, "SW") || in.Info.Vendor != "IBM") {
			t.Errorf("swtpm (libtpms) should report IBM, SW TPM: %+v", in.Info)
		}
		if in.Permanent.LockoutAuthSet || in.Permanent.OwnerAuthSet || in.DA.InLockout || in.DA.Counter != 0 || in.DA.MaxTries == 0 {
			t.Errorf("auth bits %+v, DA %+v", in.Permanent, in.DA)
		}

		want := map[tpm2.TPMHandle]struct {
			alg  string
			tmpl Template
		}{
			EKHandleRSA:            {"rsa2048", TemplateEKRSA2048},
			SRKHandleRSA:           {"rsa2048", TemplateSRKRSA2048},
			DefaultDeviceKeyHandle: {"ecc-p256", TemplateDeviceKey},
			DPSKeyHandle:           {"keyedhash", TemplateDPSKey},
			foreignHandle:          {"ecc-p256", ""},
		}
		if e.sw != nil {
			want[EKHandleECCP384] = struct {
				alg  string
				tmpl Template
			}{"ecc-p384", TemplateEKECCP384}
		}
		if len(in.Persistent) != len(want) {
			t.Errorf("persistent objects %d, want %d", len(in.Persistent), len(want))
		}
		for _, o := range in.Persistent {
			w, ok := want[o.Handle]
			if !ok || o.Alg != w.alg || o.Template != w.tmpl {
				t.Errorf("%#x: %s %q, want %+v", uint32(o.Handle), o.Alg, o.Template, w)
			}
			if (o.Alg == "keyedhash") != (o.Pub == nil) {
				t.Errorf("%#x: Go public key %T", uint32(o.Handle), o.Pub)
			}
		}

		c := in.CertifyingIndex(ek.Pub)
		if c == nil || c.Slot.Index != 0x01C00002 || c.Cert.Padding != 0 || c.Cert.Header || c.NV.Size < len(c.Cert.DER) {
			t.Fatalf("RSA EK certificate: %+v", c)
		}
		wantCerts := 1
		if e.sw != nil {
			wantCerts = 2
			var p384 *Object
			for i := range in.Persistent {
				if in.Persistent[i].Handle == EKHandleECCP384 {
					p384 = &in.Persistent[i]
				}
			}
			if c := in.CertifyingIndex(p384.Pub); c == nil || c.Slot.Index != 0x01C00016 {
				t.Errorf("the P-384 EK's certificate: %+v", c)
			}
		}
		if len(in.EKCerts) != wantCerts {
			t.Errorf("%d EK certificate indices, want %d", len(in.EKCerts), wantCerts)
		}
		if len(in.Intermediates) != 0 || in.IntermediatesErr != nil {
			t.Errorf("intermediates %d, %v", len(in.Intermediates), in.IntermediatesErr)
		}
	})
}

// TestInspectSkipsDAProtectedIndex: an EK certificate index without
// TPMA_NV_NO_DA whose auth is not empty is listed but never read, so the
// dictionary-attack counter does not move.
func TestInspectSkipsDAProtectedIndex(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		const idx = 0x01C0000A // the ECC P-256 low-range slot
		der := testEKCertDER(t)
		platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
		if _, err := (tpm2.NVDefineSpace{
			AuthHandle: platform,
			Auth:       tpm2.TPM2BAuth{Buffer: []byte("not empty")},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex: idx, NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary},
				DataSize:   uint16(len(der)),
			}),
		}).Execute(e.tpm.tr); err != nil {
			t.Fatal(err)
		}
		_, nh, err := e.tpm.nvPublic(idx)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.tpm.nvWriteChunks(platform, nh, der); err != nil {
			t.Fatal(err)
		}
		in := inspectUnchanged(t, e.tpm)
		var found bool
		for _, c := range in.EKCerts {
			if c.Slot.Index == idx {
				found = true
				if c.Cert != nil || c.Err == nil || !strings.Contains(c.Err.Error(), "NO_DA") {
					t.Errorf("DA-protected index: cert %v, err %v", c.Cert != nil, c.Err)
				}
			}
		}
		if !found || in.DA.Counter != 0 {
			t.Errorf("index listed %v, DA counter %d", found, in.DA.Counter)
		}
	})
}

func TestInfoStrings(t *testing.T) {
	for _, tc := range []struct {
		info           Info
		fw, rev, manuf string
	}{
		// Infineon SLB9670 firmware 7.85.4555.0 as tpm2_getcap prints its properties.
		{Info{ManufacturerID: 0x49465800, FirmwareV1: 0x00070055, FirmwareV2: 0x0011CB00, Revision: 138}, "7.85.4555.0", "1.38", "IFX"},
		// Nuvoton NPCT75x 7.2.3.1.
		{Info{ManufacturerID: 0x4E544300, FirmwareV1: 0x00070002, FirmwareV2: 0x00030001, Revision: 159}, "7.2.3.1", "1.59", "NTC"},
		// A vendor whose format station does not know: the four halves.
		{Info{ManufacturerID: 0x53544D20, FirmwareV1: 0x00010102, FirmwareV2: 0x00000000, Revision: 116}, "1.258.0.0", "1.16", "STM"},
	} {
		tc.info.Manufacturer = asciiProperty(tc.info.ManufacturerID)
		if got := tc.info.FirmwareVersion(); got != tc.fw {
			t.Errorf("%s firmware %q, want %q", tc.manuf, got, tc.fw)
		}
		if got := tc.info.RevisionString(); got != tc.rev {
			t.Errorf("%s revision %q, want %q", tc.manuf, got, tc.rev)
		}
		if tc.info.Manufacturer != tc.manuf || tcgVendors[tc.manuf] == "" {
			t.Errorf("manufacturer %q, want %q", tc.info.Manufacturer, tc.manuf)
		}
	}
	if got := asciiProperty(0x53572020, 0x2054504D, 0, 0); got != "SW   TPM" {
		t.Errorf("vendor string %q", got)
	}
	if got := asciiProperty(0x41014200); got != "A?B" {
		t.Errorf("control bytes: %q", got)
	}
}

// TestMatchTemplate: each template is recognised whatever its unique
// field, and one changed attribute is not.
func TestMatchTemplate(t *testing.T) {
	for _, k := range knownTemplates() {
		a := k.tmpl
		if got := MatchTemplate(&a); got != k.name {
			t.Errorf("%s: matched %q", k.name, got)
		}
		b := k.tmpl
		b.ObjectAttributes.NoDA = !b.ObjectAttributes.NoDA
		if got := MatchTemplate(&b); got != "" {
			t.Errorf("%s with NoDA flipped: matched %q", k.name, got)
		}
		if !bytes.Equal(tpm2.Marshal(a), tpm2.Marshal(k.tmpl)) {
			t.Errorf("%s: MatchTemplate changed its argument", k.name)
		}
	}
	ek := azureEmptyUniqueEK()
	if got := MatchTemplate(&ek); got != TemplateEKRSA2048 {
		t.Errorf("the empty-unique EK has the L-1 template but for unique: %q", got)
	}
	if MatchTemplate(nil) != "" {
		t.Error("nil matched")
	}
}
