// Package tpmlatency models how long a discrete TPM takes for each command,
// so that benchmarks run on the simulator or swtpm can say what a unit costs
// on a real line and where that time goes. It is for tests and benchmarks
// only: nothing in station's commands imports it.
//
// A Model wraps a TPM's connection (tpmops.OpenWrapped(addr, m.Wrap)) and
// gives every command the time a chosen Part takes for it: with Sleep it
// waits until the command has taken that long (end-to-end runs behave as on
// the chip); without, it only accounts for it (fast, exact, repeatable).
// Either way it tallies modelled and real time by kind of command and by
// step (Mark).
//
// # Sources
//
// Measured, per part (Parts): RSA-2048 and ECC P-256 key generation (the
// wolfTPM benchmark creates them as primary keys from the hierarchy seed,
// so this is TPM2_CreatePrimary), ECDSA P-256 signing, RSA-2048 OAEP
// decryption and ECDH P-256, from wolfSSL's wolfTPM benchmark captures on real chips
// (github.com/wolfSSL/wolfTPM, README.md "TPM2 Benchmarks" and
// docs/benchmarks.md: examples/bench/bench, averages over 1-10 operations;
// SPI at 33-43 MHz). RSA key generation is a search for primes: its time
// varies widely from one key to the next (wolfTPM's 7.5 s for the
// ST33TPHF2XSPI is a single operation); the model uses the mean.
//
// Estimated (no vendor publishes them; marked "estimate" below): the cost
// of commands that commit the TPM's non-volatile memory (EvictControl,
// NV_DefineSpace, NV_Write, HierarchyChangeAuth...), of loading a key, and
// the fixed cost of a simple command. For scale: the Linux TPM driver
// (drivers/char/tpm/tpm2-cmd.c, tpm2_ordinal_duration) allows 2 s for
// HierarchyChangeAuth and NV_Read, 30 s for CreatePrimary and Create and
// 750 ms for GetCapability: upper bounds, not typical times.
//
// Not modelled: a part that keeps a primary key it generated before (some
// cache the EK) answers CreatePrimary for it at once; the model charges the
// full key generation every time, which is the cost station must plan for.
package tpmlatency

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/factory-id/station/tpmops"
)

// Part is the timing of one discrete TPM.
type Part struct {
	Name string // e.g. "Infineon SLB9672"
	Bus  string // how it was measured, e.g. "SPI 43 MHz"

	// Measured (wolfTPM benchmark captures, see the package doc).
	RSAKeyGen  time.Duration // RSA-2048 CreatePrimary/Create
	ECCKeyGen  time.Duration // ECC P-256 CreatePrimary/Create
	ECDSASign  time.Duration // TPM2_Sign, ECDSA P-256
	RSADecrypt time.Duration // RSA-2048 private key with OAEP (RSA_Decrypt)
	ECDH       time.Duration // ECDH P-256 (ECDH_ZGen): "ECDHE 256 agree"
	// PerByte is the cost of moving one byte to or from the TPM, derived
	// from the measured SHA-256 throughput (1 KiB hash commands): an upper
	// bound, since it includes the hashing.
	PerByte time.Duration
}

// Estimates shared by every part (see the package doc: no published
// figures exist for them).
const (
	// estimate: a command that does no cryptography beyond a password
	// session (ReadPublic, GetCapability, FlushContext, NV_ReadPublic,
	// StartAuthSession, PolicySecret...): bus framing, parsing, a lookup.
	simpleCommand = 2 * time.Millisecond
	// estimate: committing the TPM's non-volatile memory (a flash page
	// erase and write in a smart-card class controller): EvictControl,
	// NV_DefineSpace, NV_UndefineSpace, NV_Write, NV_WriteLock,
	// HierarchyChangeAuth, DictionaryAttackLockReset, Clear.
	nvCommit = 30 * time.Millisecond
	// estimate: loading a key made under a parent (AES-CFB unwrap, HMAC
	// integrity check, public/private consistency).
	loadKey = 20 * time.Millisecond
	// estimate: creating a symmetric or keyed-hash object (RNG and KDF).
	symmetricKey = 10 * time.Millisecond
)

// perByte returns the transfer cost per byte for hash throughput kbps
// (KB/s, as wolfTPM reports it).
func perByte(kbps float64) time.Duration {
	return time.Duration(float64(time.Second) / (kbps * 1000))
}

// Parts are the modelled TPMs, from wolfTPM's captures (README.md "TPM2
// Benchmarks"; docs/benchmarks.md summarises the same runs).
var Parts = []Part{
	{Name: "Infineon SLB9670", Bus: "SPI 43 MHz", RSAKeyGen: ms(2196.2), ECCKeyGen: ms(231.4), ECDSASign: ms(68.9), RSADecrypt: ms(167.4), ECDH: ms(232.1), PerByte: perByte(136.8)},
	{Name: "Infineon SLB9672", Bus: "SPI 43 MHz", RSAKeyGen: ms(1567.7), ECCKeyGen: ms(136.0), ECDSASign: ms(35.6), RSADecrypt: ms(87.7), ECDH: ms(65.9), PerByte: perByte(84.7)},
	{Name: "ST ST33KTPM2XSPI", Bus: "SPI 33 MHz", RSAKeyGen: ms(1944.1), ECCKeyGen: ms(89.2), ECDSASign: ms(25.3), RSADecrypt: ms(93.0), ECDH: ms(66.4), PerByte: perByte(126.7)},
	{Name: "ST ST33TPHF2XSPI", Bus: "SPI 33 MHz", RSAKeyGen: ms(7455.0), ECCKeyGen: ms(219.8), ECDSASign: ms(42.3), RSADecrypt: ms(251.8), ECDH: ms(247.1), PerByte: perByte(82.5)},
	{Name: "Nuvoton NPCT750", Bus: "SPI 43 MHz", RSAKeyGen: ms(3408.7), ECCKeyGen: ms(84.0), ECDSASign: ms(56.4), RSADecrypt: ms(70.7), ECDH: ms(29.4), PerByte: perByte(120.6)},
	{Name: "Nuvoton NPCT650", Bus: "not stated", RSAKeyGen: ms(4479.2), ECCKeyGen: ms(147.6), ECDSASign: ms(190.1), RSADecrypt: ms(544.1), ECDH: ms(175.9), PerByte: perByte(89.1)},
}

// Default is the part benchmarks model when they pick one: the current
// Infineon part, common on industrial boards.
var Default = Parts[1]

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// Cost is the time the part takes for a command of kind k, cmdLen bytes
// long, answered with rspLen bytes.
func (p Part) Cost(k tpmops.CommandKind, cmdLen, rspLen int) time.Duration {
	transfer := time.Duration(cmdLen+rspLen) * p.PerByte
	switch k.Code {
	case tpm2.TPMCCCreatePrimary, tpm2.TPMCCCreate, tpm2.TPMCCCreateLoaded:
		// Measured figures include their own transfer.
		switch k.Alg {
		case tpm2.TPMAlgRSA:
			return p.RSAKeyGen
		case tpm2.TPMAlgECC:
			return p.ECCKeyGen
		}
		return symmetricKey + transfer
	case tpm2.TPMCCSign:
		return p.ECDSASign
	case tpm2.TPMCCActivateCredential, tpm2.TPMCCImport, tpm2.TPMCCRSADecrypt:
		// The secret is RSA-OAEP encrypted to station's default RSA EK or
		// SRK (an ECC one would take an ECDH instead).
		return p.RSADecrypt
	case tpm2.TPMCCStartAuthSession:
		// A salted session decrypts its salt with the salt key.
		switch k.Alg {
		case tpm2.TPMAlgRSA:
			return p.RSADecrypt
		case tpm2.TPMAlgECC:
			return p.ECDH
		}
		return simpleCommand + transfer
	case tpm2.TPMCCLoad:
		return loadKey + transfer
	case tpm2.TPMCCEvictControl, tpm2.TPMCCNVDefineSpace, tpm2.TPMCCNVUndefineSpace,
		tpm2.TPMCCNVWrite, tpm2.TPMCCNVWriteLock, tpm2.TPMCCHierarchyChanegAuth,
		tpm2.TPMCCDictionaryAttackLockReset, tpm2.TPMCCClear:
		return nvCommit + transfer
	}
	return simpleCommand + transfer
}

// Tally is what a set of commands cost.
type Tally struct {
	Commands int
	Model    time.Duration // on the modelled part
	Real     time.Duration // on the TPM underneath (simulator, swtpm)
}

func (t *Tally) add(model, real time.Duration) {
	t.Commands++
	t.Model += model
	t.Real += real
}

// Model applies a Part's timing to the TPMs it wraps. Its methods are safe
// for concurrent use.
type Model struct {
	Part  Part
	Sleep bool // wait until each command has taken the modelled time

	mu     sync.Mutex
	step   string
	byStep map[string]*Tally
	byKind map[tpmops.CommandKind]*Tally
	total  Tally
}

// New returns a model of part.
func New(part Part, sleep bool) *Model {
	m := &Model{Part: part, Sleep: sleep}
	m.Reset()
	return m
}

// Wrap returns tr with the model's timing (for tpmops.OpenWrapped).
func (m *Model) Wrap(tr transport.TPM) transport.TPM { return &wrapped{m: m, inner: tr} }

// Mark attributes the commands that follow to step (until the next Mark);
// a station.Observer's StepStarted calls it.
func (m *Model) Mark(step string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.step = step
}

// Reset forgets every tally (and the current step).
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.step, m.byStep, m.byKind, m.total = "", map[string]*Tally{}, map[tpmops.CommandKind]*Tally{}, Tally{}
}

// Total is the tally of every command since the last Reset.
func (m *Model) Total() Tally {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total
}

// Step is the tally of the commands marked as step ("" before any Mark).
func (m *Model) Step(step string) Tally {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.byStep[step]; t != nil {
		return *t
	}
	return Tally{}
}

// KindTally is the tally of one kind of command.
type KindTally struct {
	Kind tpmops.CommandKind
	Tally
}

// Kinds returns the tally by kind of command, costliest first.
func (m *Model) Kinds() []KindTally {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]KindTally, 0, len(m.byKind))
	for k, t := range m.byKind {
		out = append(out, KindTally{k, *t})
	}
	slices.SortFunc(out, func(a, b KindTally) int {
		return cmp.Or(cmp.Compare(b.Model, a.Model), cmp.Compare(a.Kind.Code, b.Kind.Code), cmp.Compare(a.Kind.Alg, b.Kind.Alg))
	})
	return out
}

func (m *Model) record(k tpmops.CommandKind, model, real time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tally(m.byStep, m.step).add(model, real)
	tally(m.byKind, k).add(model, real)
	m.total.add(model, real)
}

// tally returns the tally at key, creating it.
func tally[K comparable](tallies map[K]*Tally, key K) *Tally {
	t := tallies[key]
	if t == nil {
		t = &Tally{}
		tallies[key] = t
	}
	return t
}

type wrapped struct {
	m     *Model
	inner transport.TPM
}

func (w *wrapped) Send(cmd []byte) ([]byte, error) {
	start := time.Now()
	rsp, err := w.inner.Send(cmd)
	real := time.Since(start)
	k := tpmops.KindOf(cmd)
	cost := w.m.Part.Cost(k, len(cmd), len(rsp))
	if w.m.Sleep && cost > real {
		time.Sleep(cost - real)
	}
	w.m.record(k, cost, real)
	return rsp, err
}
