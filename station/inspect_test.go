package station

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/tpmops"
)

func verdictOf(vs []HandleVerdict, h tpm2.TPMHandle) *HandleVerdict {
	for i := range vs {
		if vs[i].Handle == h {
			return &vs[i]
		}
	}
	return nil
}

// TestRecognizeSimulator inspects a unit provisioned on the simulator:
// the database finds it (by its persisted EK, and by its EK certificate
// once the EK is no longer persisted), its handles are station's, DPS keys
// left by verify are named, and a record that disagrees with the TPM is
// said to.
func TestRecognizeSimulator(t *testing.T) {
	l := newTestLine(t, nil)
	tp := l.simUnit()
	if _, err := l.provision(Request{Serial: "SIM-INSP", TPM: tp, TPMAddr: "sim"}); err != nil {
		t.Fatal(err)
	}
	u := l.unit("SIM-INSP")

	// DPS keys as verify leaves them when killed: at 0x81000100, and after
	// it when that handle is taken.
	for _, h := range []tpm2.TPMHandle{tpmops.DPSKeyHandle, tpmops.DPSKeyHandle + 1} {
		hk := make([]byte, 32)
		rand.Read(hk)
		ch, err := tpmops.MakeDPSChallenge(u.EKPublic, u.SRKPublic, hk)
		if err != nil {
			t.Fatal(err)
		}
		k, err := tp.ActivateDPSKey(ch, tpmops.DPSDevice{EK: tpmops.EKHandleRSA, SRK: tpmops.SRKHandleRSA, Persist: h})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k.Remove() })
	}

	in, err := tp.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	noLeaks(t, tp)
	found, err := FindUnit(l.env.DB, in)
	if err != nil || found == nil || found.Serial != "SIM-INSP" {
		t.Fatalf("FindUnit: %+v, %v", found, err)
	}
	if r := RecognizeTPM(in, found); r.Status != TPMProvisioned || r.Serial != "SIM-INSP" || r.Detail != "provisioned as SIM-INSP" {
		t.Errorf("RecognizeTPM: %+v", r)
	}
	if r := RecognizeTPM(in, nil); r.Status != TPMOwnedElsewhere || !strings.Contains(r.Detail, "lockout auth is set") {
		t.Errorf("RecognizeTPM without its record: %+v", r)
	}

	vs := Recognize(in, tpm2.TPMHandle(l.cfg.TPM.DeviceKeyHandle), found)
	for h, w := range map[tpm2.TPMHandle]struct {
		role    string
		station bool
		detail  string
	}{
		tpmops.EKHandleRSA:      {RoleEK, true, "standard RSA-2048 EK (TCG template L-1); certified by NV 0x01c00002; the EK recorded for unit SIM-INSP"},
		tpmops.SRKHandleRSA:     {RoleSRK, true, "standard RSA-2048 SRK template; the SRK recorded for unit SIM-INSP"},
		0x81000010:              {RoleDeviceKey, true, "station's device key of unit SIM-INSP"},
		tpmops.DPSKeyHandle:     {RoleDPSKey, false, "the device's own DPS registration, or a leftover of an interrupted station verify"},
		tpmops.DPSKeyHandle + 1: {RoleDPSTestKey, true, "leftover DPS test key of an interrupted station verify"},
	} {
		v := verdictOf(vs, h)
		if v == nil || v.Role != w.role || v.Station != w.station || !strings.Contains(v.Detail, w.detail) {
			t.Errorf("%#x: %+v, want %+v", uint32(h), v, w)
		}
	}

	// A record that disagrees with the TPM (another unit's SRK and device key).
	other := *found
	other.SRKName = append([]byte{}, found.SRKName...)
	other.SRKName[len(other.SRKName)-1] ^= 1
	other.DeviceKeyPublic, other.DeviceKeyPending = []byte{0, 1, 2}, nil
	other.EKPublic = []byte{0, 1, 2}
	vs = Recognize(in, 0x81000010, &other)
	if v := verdictOf(vs, tpmops.SRKHandleRSA); v.Station || !strings.Contains(v.Detail, "not the SRK recorded for unit SIM-INSP") {
		t.Errorf("SRK against another record: %+v", v)
	}
	if v := verdictOf(vs, 0x81000010); v.Role != RoleUnknown || v.Station || !strings.Contains(v.Detail, "not the key recorded for unit SIM-INSP") {
		t.Errorf("device key against another record: %+v", v)
	}
	if v := verdictOf(vs, tpmops.EKHandleRSA); !strings.Contains(v.Detail, "not the EK recorded for unit SIM-INSP") {
		t.Errorf("EK against another record: %+v", v)
	}
	// A device key handle the config does not name: not station's.
	vs = Recognize(in, 0x81000020, nil)
	if v := verdictOf(vs, 0x81000010); v.Role != RoleUnknown || v.Station || !strings.HasPrefix(v.Detail, "unknown: not station's") {
		t.Errorf("the device key at a handle station was not told: %+v", v)
	}

	// With the EK no longer persisted, the EK certificate in NV still
	// finds the unit (test setup evicts it; station never does).
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: tpmops.EKHandleRSA, Name: ekName(t, tp)},
		PersistentHandle: tpmops.EKHandleRSA,
	}).Execute(tp.Transport()); err != nil {
		t.Fatal(err)
	}
	in, err = tp.Inspect()
	if err != nil {
		t.Fatal(err)
	}
	if found, err := FindUnit(l.env.DB, in); err != nil || found == nil || found.Serial != "SIM-INSP" {
		t.Errorf("FindUnit by EK certificate: %+v, %v", found, err)
	}
	if found, _ := FindUnit(l.env.DB, &tpmops.Inspection{}); found != nil || RecognizeTPM(&tpmops.Inspection{}, nil).Status != TPMFresh {
		t.Errorf("an empty TPM is found as %+v", found)
	}
}

func ekName(t *testing.T, tp *tpmops.TPM) tpm2.TPM2BName {
	t.Helper()
	k, err := tp.ReadPublic(tpmops.EKHandleRSA)
	if err != nil {
		t.Fatal(err)
	}
	return tpm2.TPM2BName{Buffer: k.Name}
}
