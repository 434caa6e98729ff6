package tpmlatency

import (
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/tpmops"
)

func open(t *testing.T, m *Model) *tpmops.TPM {
	t.Helper()
	tp, err := tpmops.OpenWrapped("sim", m.Wrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

// Without Sleep the model charges each command its part's time, by kind
// and by step, and the figures add up.
func TestModelAccounts(t *testing.T) {
	m := New(Default, false)
	tp := open(t, m)
	m.Mark("ek")
	if _, _, err := tp.EnsureEK(tpmops.RSA2048, nil); err != nil {
		t.Fatal(err)
	}
	m.Mark("caps")
	if _, err := tp.Permanent(); err != nil {
		t.Fatal(err)
	}
	kinds := map[tpmops.CommandKind]KindTally{}
	for _, k := range m.Kinds() {
		kinds[k.Kind] = k
	}
	if k := kinds[tpmops.CreatePrimaryRSA]; k.Commands != 1 || k.Model != Default.RSAKeyGen {
		t.Errorf("CreatePrimary(RSA): %+v, want 1 command of %v", k, Default.RSAKeyGen)
	}
	if k := kinds[tpmops.CommandKind{Code: tpm2.TPMCCEvictControl}]; k.Commands != 1 || k.Model < nvCommit {
		t.Errorf("EvictControl: %+v, want 1 command of at least %v", k, nvCommit)
	}
	if ks := m.Kinds(); ks[0].Kind != tpmops.CreatePrimaryRSA {
		t.Errorf("costliest kind %v, want CreatePrimary(RSA)", ks[0].Kind)
	}
	ek, caps, total := m.Step("ek"), m.Step("caps"), m.Total()
	if caps.Commands == 0 || caps.Model < simpleCommand || ek.Model < Default.RSAKeyGen {
		t.Errorf("steps: ek %+v, caps %+v", ek, caps)
	}
	if ek.Commands+caps.Commands != total.Commands || ek.Model+caps.Model != total.Model || ek.Real+caps.Real != total.Real {
		t.Errorf("steps %+v + %+v do not add up to %+v", ek, caps, total)
	}
	if tp.Stats().Busy >= total.Model {
		t.Errorf("without Sleep the TPM took %v, the model's %v: it waited", tp.Stats().Busy, total.Model)
	}
	m.Reset()
	if m.Total() != (Tally{}) || len(m.Kinds()) != 0 {
		t.Error("Reset left tallies")
	}
}

// With Sleep every command takes at least the modelled time.
func TestModelSleeps(t *testing.T) {
	slow := Part{Name: "slow bus", PerByte: time.Millisecond} // a GetCapability: tens of milliseconds
	m := New(slow, true)
	tp := open(t, m)
	before := tp.Stats()
	if _, err := tp.Permanent(); err != nil {
		t.Fatal(err)
	}
	got, model := tp.Stats().Since(before).Busy, m.Total().Model
	if model < 20*time.Millisecond {
		t.Fatalf("test setup: the model charges only %v", model)
	}
	if got < model {
		t.Fatalf("the command took %v, less than the modelled %v", got, model)
	}
}

func TestPartsCited(t *testing.T) {
	for _, p := range Parts {
		if p.Name == "" || p.Bus == "" || p.RSAKeyGen < time.Second || p.ECCKeyGen <= 0 || p.ECDSASign <= 0 || p.RSADecrypt <= 0 || p.ECDH <= 0 || p.PerByte <= 0 {
			t.Errorf("part %+v is incomplete", p)
		}
		if p.RSAKeyGen < 5*p.ECCKeyGen {
			t.Errorf("%s: RSA key generation %v is not far above ECC's %v", p.Name, p.RSAKeyGen, p.ECCKeyGen)
		}
	}
}
