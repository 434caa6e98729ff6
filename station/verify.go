package station

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// The verify checks, in the order they run and are reported (docs/CLI.md,
// station verify).
const (
	CheckRecord      = "record"
	CheckEK          = "ek"
	CheckEKCert      = "ek-cert"
	CheckSRK         = "srk"
	CheckOwnership   = "ownership"
	CheckDeviceKey   = "device-key"
	CheckCertificate = "certificate"
	CheckFlash       = "flash"
	CheckDPS         = "dps-attestation"
	CheckNoLeaks     = "no-leaks"
)

// VerifyChecks lists every check name in report order.
var VerifyChecks = []string{CheckRecord, CheckEK, CheckEKCert, CheckSRK, CheckOwnership,
	CheckDeviceKey, CheckCertificate, CheckFlash, CheckDPS, CheckNoLeaks}

// VerifyRequest names the unit to verify and, optionally, where it is.
type VerifyRequest struct {
	Serial string
	// TPM is the unit's TPM address; empty: tpm.address of the config.
	TPM string
	// Device is an already open TPM (station demo's simulators); TPM is
	// then only recorded. Verify does not close it.
	Device *tpmops.TPM
	// Flash is the unit's flash target list; empty: the one recorded at
	// provisioning, else flash.target of the config.
	Flash string
	// Operator is who runs the verify (audit); empty: station.operator.
	Operator string
	// Now is the verify time (zero: the current time).
	Now time.Time
	// Observer hears each check as it starts and ends (nil: nobody).
	Observer Observer
}

// Check is one verify check's outcome.
type Check struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// VerifyReport is the outcome of verifying one unit: Passed only when every
// check passed.
type VerifyReport struct {
	Serial string  `json:"serial"`
	Passed bool    `json:"passed"`
	Checks []Check `json:"checks"`
	// Error says why no check could run (the TPM unreachable, the run
	// interrupted, another unit's TPM on the fixture); empty when the checks
	// speak for themselves.
	Error string `json:"error,omitempty"`
	// Cleanup lists what a killed earlier run had left on the TPM and this
	// verify cleared first (stale transients, its DPS test key).
	Cleanup []string `json:"cleanup,omitempty"`
}

// Failed returns the names of the failed checks.
func (r *VerifyReport) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.Passed {
			out = append(out, c.Name)
		}
	}
	return out
}

// ErrVerifyFailed is returned (wrapped) with a report whose checks did not
// all pass.
var ErrVerifyFailed = errors.New("unit failed verification")

// ErrWrongTPM means the TPM verify reached holds another EK than the unit's
// recorded one: another unit (or an unknown TPM) is on the fixture. It
// wraps ErrVerifyFailed.
var ErrWrongTPM = hint.Wrap(fmt.Errorf("%w: wrong TPM on the fixture", ErrVerifyFailed),
	"put the unit named on the fixture (or verify the unit the TPM belongs to), then re-run verify")

// verifier runs the checks of one unit.
type verifier struct {
	env  *Env
	req  VerifyRequest
	now  time.Time
	unit *store.Unit
	tpm  *tpmops.TPM
	rep  *VerifyReport
	// What the checks learn and later checks use.
	ekPub      crypto.PublicKey
	ekCert     *verifyEKCert // the recorded EK's certificate, looked up once
	certSource string
	revokedCAs map[string]store.Revocation
	// unreachable is the first check error that says the TPM stopped
	// answering: the report is then not a verdict on the unit.
	unreachable error
	// transientsBefore are the transient handles loaded when verify began.
	transientsBefore map[tpmops.Handle]bool
	// wrongTPM says whose TPM is on the fixture when it is not this unit's.
	wrongTPM string
	ctx      context.Context
}

// Verify re-proves everything on a provisioned unit (docs/CLI.md: station
// verify) and appends the report to the audit log. It only reads
// the unit: the one thing it writes is the temporary DPS key of the
// dps-attestation check, which it removes again.
//
// The returned error is nil when every check passed; it wraps
// ErrVerifyFailed when a check failed (the report says which), and
// tpmops.ErrUnreachable (retryable) when the TPM cannot be opened or stops
// answering. The report is returned in every case where the unit was
// examined.
func Verify(ctx context.Context, env *Env, req VerifyRequest) (*VerifyReport, error) {
	if req.Serial == "" {
		return nil, errors.New("verify: no serial")
	}
	v := &verifier{env: env, req: req, now: req.Now, rep: &VerifyReport{Serial: req.Serial}, ctx: ctx}
	if v.now.IsZero() {
		v.now = time.Now()
	}
	cfg := env.Config
	if v.req.Operator == "" {
		v.req.Operator = cfg.Station.Operator
	}

	// The record, and what else the station knows (revoked CAs).
	err := env.DB.View(func(tx *bolt.Tx) error {
		u, err := store.GetUnit(tx, req.Serial)
		if err != nil {
			return err
		}
		v.unit = u
		v.revokedCAs, err = store.RevokedCAs(tx)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("verify %s: reading the record: %w", req.Serial, err)
	}

	addr := req.TPM
	if addr == "" {
		addr = cfg.TPM.Address
	}
	if v.unit == nil {
		v.add(CheckRecord, "", fmt.Errorf("no unit %s in the station database", req.Serial))
	} else {
		v.run(CheckRecord, v.checkRecord)
	}
	if v.unit != nil {
		v.tpm = req.Device
		if v.tpm == nil {
			tp, err := tpmops.Open(addr)
			if err != nil {
				return nil, fmt.Errorf("verify %s: %w", req.Serial, err)
			}
			defer tp.Close()
			v.tpm = tp
		}
		v.wrongTPM = v.otherUnitsTPM()
		if v.wrongTPM == "" {
			// What a killed run (a verify killed after persisting its DPS
			// test key, a provision) left behind goes first, or the checks
			// would trip over it.
			cleaned, err := clearLeftovers(env, v.tpm, v.unit)
			v.rep.Cleanup = cleaned
			for _, c := range cleaned {
				observer(req.Observer).Note(req.Serial, c)
			}
			if err != nil {
				v.noteTPMError(err)
				v.add(CheckNoLeaks, "", err)
			}
		}
		if hs, err := v.tpm.Transients(); err == nil {
			v.transientsBefore = map[tpmops.Handle]bool{}
			for _, h := range hs {
				v.transientsBefore[h] = true
			}
		}
		v.run(CheckEK, v.checkEK)
		if v.wrongTPM != "" {
			v.rep.Error = v.wrongTPM
			for _, name := range VerifyChecks {
				if v.find(name) == nil {
					v.add(name, "", fmt.Errorf("not checked: %s", v.wrongTPM))
				}
			}
		}
		v.run(CheckEKCert, v.checkEKCert)
		v.run(CheckSRK, v.checkSRK)
		v.run(CheckOwnership, v.checkOwnership)
		v.run(CheckDeviceKey, v.checkDeviceKey)
		v.run(CheckCertificate, v.checkCertificate)
		v.run(CheckFlash, v.checkFlash)
		v.run(CheckDPS, v.checkDPS)
		if v.find(CheckNoLeaks) == nil {
			v.run(CheckNoLeaks, v.checkNoLeaks)
		}
	}
	for _, name := range VerifyChecks {
		if v.find(name) == nil {
			v.add(name, "", errors.New("not checked: the unit has no record"))
		}
	}
	v.sort()
	v.rep.Passed = len(v.rep.Failed()) == 0

	if err := v.audit(); err != nil {
		return v.rep, fmt.Errorf("verify %s: recording the result in the audit log: %w", req.Serial, err)
	}
	if v.unreachable != nil {
		return v.rep, fmt.Errorf("verify %s: %w", req.Serial, v.unreachable)
	}
	if v.wrongTPM != "" {
		return v.rep, fmt.Errorf("unit %s: %w: %s", req.Serial, ErrWrongTPM, v.wrongTPM)
	}
	if !v.rep.Passed {
		err := fmt.Errorf("unit %s: %w: %s", req.Serial, ErrVerifyFailed, strings.Join(v.rep.Failed(), ", "))
		if v.unit == nil {
			return v.rep, hint.Wrap(err, hint.Of(store.ErrNotFound))
		}
		return v.rep, hint.Wrap(err, VerifyFailedHint(req.Serial))
	}
	return v.rep, nil
}

// verifyAudit is the audit payload of a verify: the report and where the
// unit was reached. It holds no secret.
type verifyAudit struct {
	*VerifyReport
	TPM   string `json:"tpm,omitempty"`
	Flash string `json:"flash,omitempty"`
}

func (v *verifier) audit() error {
	p := verifyAudit{VerifyReport: v.rep, TPM: v.req.TPM, Flash: v.flashSpec()}
	if p.TPM == "" {
		p.TPM = v.env.Config.TPM.Address
	}
	return v.env.DB.Update(func(tx *bolt.Tx) error {
		if _, err := v.env.Log.Append(tx, audit.Event{Serial: v.req.Serial, Type: audit.EventVerify, Operator: v.req.Operator, Payload: p}); err != nil {
			return err
		}
		_, err := v.env.Log.Checkpoint(tx) // every verdict is signed as it is recorded
		return err
	})
}

func (v *verifier) run(name string, fn func() (string, error)) {
	if v.find(name) != nil {
		return // already decided (not checked: wrong TPM)
	}
	if err := v.ctx.Err(); err != nil {
		v.add(name, "", fmt.Errorf("not checked: verify interrupted (%v)", err))
		return
	}
	obs := observer(v.req.Observer)
	obs.StepStarted(v.req.Serial, name)
	t0 := time.Now()
	detail, err := fn()
	obs.StepDone(v.req.Serial, name, time.Since(t0), err)
	if err != nil && v.unreachable == nil {
		v.noteTPMError(fmt.Errorf("check %s: %w", name, err))
	}
	v.add(name, detail, err)
}

// noteTPMError keeps the first error that says the TPM could not be asked
// (unreachable, or out of resources): the report is then not a verdict on
// the unit, and the exit code says retry.
func (v *verifier) noteTPMError(err error) {
	if v.unreachable == nil && (errors.Is(err, tpmops.ErrUnreachable) || errors.Is(err, tpmops.ErrTPMBusy)) {
		v.unreachable = err
	}
}

// otherUnitsTPM says whose TPM is on the fixture when the key at the EK
// handle is another recorded unit's EK ("" otherwise: the ek check says
// what is wrong with a key that is nobody's).
func (v *verifier) otherUnitsTPM() string {
	if len(v.unit.EKPublic) == 0 {
		return ""
	}
	_, h, err := tpmops.EKTemplate(v.ekAlg())
	if err != nil {
		return ""
	}
	k, err := v.tpm.ReadPublic(h)
	if err != nil || bytes.Equal(k.Public, v.unit.EKPublic) {
		return ""
	}
	var other string
	_ = v.env.DB.View(func(tx *bolt.Tx) error {
		other = store.SerialByEK(tx, sha256hex(k.Public))
		return nil
	})
	if other == "" {
		// Not another unit's: this unit's TPM with a foreign key at the EK
		// handle, or a stranger's TPM; the ek check says what is there.
		return ""
	}
	return fmt.Sprintf("this TPM holds the EK of unit %s, not %s", other, v.unit.Serial)
}

func (v *verifier) add(name, detail string, err error) {
	c := Check{Name: name, Passed: err == nil, Detail: detail}
	if err != nil {
		c.Detail = err.Error()
	}
	v.rep.Checks = append(v.rep.Checks, c)
}

func (v *verifier) find(name string) *Check {
	for i := range v.rep.Checks {
		if v.rep.Checks[i].Name == name {
			return &v.rep.Checks[i]
		}
	}
	return nil
}

// sort puts the checks in the documented order (VerifyChecks).
func (v *verifier) sort() {
	out := make([]Check, 0, len(VerifyChecks))
	for _, name := range VerifyChecks {
		if c := v.find(name); c != nil {
			out = append(out, *c)
		}
	}
	v.rep.Checks = out
}

// record: the unit exists, finished provisioning, and its record is
// self-consistent (the hashes and the registration ID derive from what it
// holds).
func (v *verifier) checkRecord() (string, error) {
	u := v.unit
	switch u.Status {
	case store.StatusProvisioned, store.StatusRevoked:
	default:
		var pending []string
		for _, s := range u.Steps {
			if s.State != store.StepDone {
				pending = append(pending, s.Name+" "+s.State)
			}
		}
		return "", fmt.Errorf("provisioning not finished (status %s; %s)", u.Status, strings.Join(pending, ", "))
	}
	var missing []string
	for what, b := range map[string][]byte{"EK": u.EKPublic, "SRK": u.SRKPublic, "device key": u.DeviceKeyPublic, "certificate": u.Cert} {
		if len(b) == 0 {
			missing = append(missing, what)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("record lacks: %s", strings.Join(missing, ", "))
	}
	if got := sha256hex(u.EKPublic); u.EKSHA256 != "" && got != u.EKSHA256 {
		return "", fmt.Errorf("record's EK hashes to %s, the record says %s", got, u.EKSHA256)
	}
	if got := sha256hex(u.Cert); got != u.CertSHA256 {
		return "", fmt.Errorf("record's certificate hashes to %s, the record says %s", got, u.CertSHA256)
	}
	if u.Attestation == enroll.AttestTPM {
		if got := enroll.RegistrationID(u.EKPublic); got != u.RegistrationID {
			return "", fmt.Errorf("registration ID %q is not the one the EK gives (%s)", u.RegistrationID, got)
		}
	}
	if !hasEscrow(u, "lockout") {
		return "", errors.New("no applied lockout-auth escrow in the record")
	}
	return fmt.Sprintf("provisioned %s by station %s; attestation %s, registration ID %s",
		u.ProvisionedAt.UTC().Format(time.RFC3339), u.StationID, u.Attestation, u.RegistrationID), nil
}

func hasEscrow(u *store.Unit, hierarchy string) bool {
	for _, e := range u.Escrows {
		if e.Hierarchy == hierarchy && !e.Pending && e.JWE != "" {
			return true
		}
	}
	return false
}

func (v *verifier) ekAlg() tpmops.Alg {
	if a, err := tpmops.ParseAlg(v.unit.EKType); err == nil {
		return a
	}
	if a, err := tpmops.ParseAlg(v.env.Config.TPM.EK); err == nil {
		return a
	}
	return tpmops.RSA2048
}

// ek: the key persisted at the EK handle is the recorded EK, and the key the
// standard template gives on this TPM: proven by reading where a vendor
// certificate certifies it (its shape is the template's and its key the
// certified one, see tpmops.ReadEK), by CreatePrimary otherwise.
func (v *verifier) checkEK() (string, error) {
	recorded, err := tpmops.PublicKey(v.unit.EKPublic)
	if err != nil {
		return "", fmt.Errorf("recorded EK: %w", err)
	}
	v.ekPub = recorded
	if v.wrongTPM != "" {
		return "", errors.New(v.wrongTPM)
	}
	alg := v.ekAlg()
	// An EK whose vendor certificate certifies it is proven by reading; else
	// CheckEK re-derives it (an RSA CreatePrimary).
	certified := v.lookupEKCert().cert != nil
	k, err := v.tpm.CheckEK(alg, v.unit.EKPublic, certified)
	if err != nil {
		return "", err
	}
	how := "certified by its vendor"
	if !certified {
		how = "re-derived"
	}
	return fmt.Sprintf("%s EK at %s is the recorded one and the standard template's, %s (SHA-256 %s)", alg, handleHex(uint32(k.Handle)), how, sha256hex(k.Public)), nil
}

// verifyEKCert is the lookup of the recorded EK's certificate and its
// verdict, shared by the ek and ek-cert checks.
type verifyEKCert struct {
	found     *tpmops.EKCertificate
	findErr   error
	rootsErr  error
	cert      *x509.Certificate // set when found chains to a vendor root
	verifyErr error
}

func (v *verifier) lookupEKCert() *verifyEKCert {
	if v.ekCert != nil {
		return v.ekCert
	}
	l := &verifyEKCert{}
	v.ekCert = l
	cfg := v.env.Config
	if v.ekPub == nil {
		if v.ekPub, l.findErr = tpmops.PublicKey(v.unit.EKPublic); l.findErr != nil {
			l.findErr = fmt.Errorf("recorded EK: %w", l.findErr)
			return l
		}
	}
	var nvChain []*x509.Certificate
	if l.found, nvChain, l.findErr = v.tpm.FindEKCert(v.ekPub, cfg.File(configs.KeyEKCertDir)); l.findErr != nil {
		return l
	}
	roots, err := tpmops.LoadVendorRoots(cfg.Path(cfg.TPM.VendorRoots))
	if err != nil {
		l.rootsErr = err
		return l
	}
	l.cert, l.verifyErr = tpmops.VerifyEKCert(l.found.DER, v.ekPub, roots, nvChain, v.now)
	return l
}

// ek-cert: the certificate of the recorded EK (in NV, else in
// tpm.ek_cert_dir) chains to a configured vendor root, through the TPM's
// own intermediates where it stores them.
func (v *verifier) checkEKCert() (string, error) {
	cfg := v.env.Config
	l := v.lookupEKCert()
	if errors.Is(l.findErr, tpmops.ErrNoEKCert) && !cfg.TPM.RequireEKCert {
		return "no EK certificate (tpm.require_ek_cert is false)", nil
	}
	for _, err := range []error{l.findErr, l.rootsErr, l.verifyErr} {
		if err != nil {
			return "", err
		}
	}
	found, c := l.found, l.cert
	detail := fmt.Sprintf("%s, issued by %q, chains to a TPM vendor root, certifies the recorded EK", found.Source, c.Issuer.CommonName)
	if len(v.unit.EKCert) > 0 && !bytes.Equal(v.unit.EKCert, found.DER) {
		detail += " (differs from the certificate recorded at provisioning)"
	}
	return detail, nil
}

// srkHandle is the recorded SRK handle, else the standard one for tpm.srk.
func (v *verifier) srkHandle() tpmops.Handle {
	if v.unit.SRKHandle != 0 {
		return tpmops.Handle(v.unit.SRKHandle)
	}
	alg, err := tpmops.ParseAlg(v.env.Config.TPM.SRK)
	if err != nil {
		alg = tpmops.RSA2048
	}
	_, h, _ := tpmops.SRKTemplate(alg)
	return h
}

// srk: the recorded SRK is persisted at its handle, with the storage-key
// attributes the DPS SDKs need.
func (v *verifier) checkSRK() (string, error) {
	h := v.srkHandle()
	_, alg, err := v.tpm.CheckSRK(h, v.unit.SRKName, v.unit.SRKPublic)
	if err != nil {
		return "", err
	}
	detail := fmt.Sprintf("recorded SRK at %s, standard %s SRK template", handleHex(uint32(h)), alg)
	if h != tpmops.SRKHandleRSA {
		detail += " (note: the Azure C SDK reads its SRK at 0x81000001)"
	}
	return detail, nil
}

// ownerAuthEscrowed reports the unit's owner auth policy.
func (v *verifier) ownerAuthEscrowed() bool {
	p := v.unit.OwnerAuthPolicy
	if p == "" {
		p = v.env.Config.Ownership.OwnerAuth
	}
	return p == "escrow"
}

// ownership: lockout auth set, owner auth as the policy says, endorsement
// auth empty, not in lockout, dictionary-attack parameters as configured.
func (v *verifier) checkOwnership() (string, error) {
	p, err := v.tpm.Permanent()
	if err != nil {
		return "", err
	}
	var probs []string
	if !p.LockoutAuthSet {
		probs = append(probs, "lockout auth is not set (anyone can clear the TPM)")
	}
	if p.EndorsementAuthSet {
		probs = append(probs, "endorsement auth is set (DPS's PolicySecret on the endorsement hierarchy will fail)")
	}
	escrow := v.ownerAuthEscrowed()
	switch {
	case escrow && !p.OwnerAuthSet:
		probs = append(probs, "owner auth is empty but the policy is escrow")
	case !escrow && p.OwnerAuthSet:
		probs = append(probs, "owner auth is set but the policy is empty (the DPS SDKs persist their key with an empty owner auth)")
	}
	if escrow && !hasEscrow(v.unit, "owner") {
		probs = append(probs, "no applied owner-auth escrow in the record")
	}
	probs = append(probs, v.escrowProblems()...)
	if p.InLockout {
		probs = append(probs, "the TPM is in dictionary-attack lockout")
	}
	da, err := v.tpm.DAParams()
	if err != nil {
		return "", err
	}
	o := v.env.Config.Ownership
	if want := (tpmops.DAParams{MaxTries: o.DAMaxTries, RecoverySeconds: o.DARecoverySeconds, LockoutRecoverySeconds: o.DALockoutRecoverySeconds}); want.MaxTries != 0 && da != want {
		probs = append(probs, fmt.Sprintf("dictionary-attack parameters %d/%ds/%ds, the config says %d/%ds/%ds",
			da.MaxTries, da.RecoverySeconds, da.LockoutRecoverySeconds, want.MaxTries, want.RecoverySeconds, want.LockoutRecoverySeconds))
	}
	if len(probs) > 0 {
		return "", errors.New(strings.Join(probs, "; "))
	}
	owner := "empty"
	if escrow {
		owner = "set (escrowed)"
	}
	return fmt.Sprintf("lockout auth set, owner auth %s, endorsement auth empty; DA %d tries, %ds, %ds",
		owner, da.MaxTries, da.RecoverySeconds, da.LockoutRecoverySeconds), nil
}

// device-key: the recorded key is at its handle, cannot leave the TPM,
// matches the recorded certificate, and signs a fresh challenge that verifies under
// the certificate's public key.
func (v *verifier) checkDeviceKey() (string, error) {
	u := v.unit
	h := tpmops.Handle(u.DeviceKeyHandle)
	if h == 0 {
		h = tpmops.Handle(v.env.Config.TPM.DeviceKeyHandle)
	}
	k, err := v.tpm.CheckDeviceKey(h, u.DeviceKeyPublic)
	if err != nil {
		return "", err
	}
	// The recorded certificate: whether the unit holds that certificate is
	// the certificate check's question.
	cert, err := x509.ParseCertificate(u.Cert)
	if err != nil {
		return "", fmt.Errorf("recorded certificate: %w", err)
	}
	certPub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return "", errors.New("the certificate's key is not an ECDSA key")
	}
	if !certPub.Equal(k.Pub) {
		return "", fmt.Errorf("the recorded certificate is not for the key at %s", handleHex(uint32(h)))
	}
	if err := v.tpm.ProveKey(k, certPub); err != nil {
		return "", err
	}
	return fmt.Sprintf("key at %s is fixedTPM|fixedParent|sensitiveDataOrigin, sign-only; signed a fresh 32-byte challenge that verifies under the certificate's key", handleHex(uint32(h))), nil
}

// flashSpec is the flash target list verify reads.
func (v *verifier) flashSpec() string {
	if v.req.Flash != "" {
		return v.req.Flash
	}
	if v.unit != nil && v.unit.FlashTarget != "" {
		return v.unit.FlashTarget
	}
	return v.env.Config.Flash.Target
}

// certificate: the certificate the unit holds (its flashed bundle; the
// record's where the target cannot be read here) chains to the pinned root
// now and through the warehouse period, names the registration ID, is the
// recorded certificate, and neither it nor its issuer is revoked.
func (v *verifier) checkCertificate() (string, error) {
	u := v.unit
	cfg := v.env.Config
	v.certSource = "the record's"
	der := u.Cert
	chainDER := u.Chain
	if b, where := flash.HeldBundle(v.flashSpec(), v.env.Config.Flash, u.Serial); b != nil {
		v.certSource = "the one on " + where
		der = b.CertDER()
		if cs, err := certgen.ParseCertificates(b.ChainPEM); err == nil && len(cs) > 0 {
			chainDER = nil
			for _, c := range cs {
				chainDER = append(chainDER, c.Raw)
			}
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", fmt.Errorf("certificate (%s): %w", v.certSource, err)
	}
	var chain []*x509.Certificate
	for _, d := range chainDER {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return "", fmt.Errorf("chain certificate: %w", err)
		}
		chain = append(chain, c)
	}
	var probs []string
	if got := certgen.Fingerprint(cert); got != u.CertSHA256 {
		probs = append(probs, fmt.Sprintf("certificate SHA-256 %s is not the recorded %s", got, u.CertSHA256))
	}
	if got := certgen.SerialHex(cert); got != u.CertSerial {
		probs = append(probs, fmt.Sprintf("certificate serial %s is not the recorded %s", got, u.CertSerial))
	}
	if cert.Subject.CommonName != u.RegistrationID {
		probs = append(probs, fmt.Sprintf("CN %q is not the registration ID %q", cert.Subject.CommonName, u.RegistrationID))
	}
	root, err := certgen.ReadCertificate(cfg.Path(cfg.PKI.Root))
	if err != nil {
		return "", fmt.Errorf("pinned root: %w", err)
	}
	warehouse := time.Duration(cfg.PKI.Warehouse)
	if err := certgen.VerifyLeaf(cert, chain, root, v.now, warehouse); err != nil {
		probs = append(probs, err.Error())
	}
	if u.Revocation != nil {
		probs = append(probs, fmt.Sprintf("unit revoked %s: %s", u.Revocation.At.UTC().Format(time.RFC3339), u.Revocation.Reason))
	}
	for _, c := range chain {
		if r, ok := v.revokedCAs[sha256hex(c.Raw)]; ok {
			probs = append(probs, fmt.Sprintf("issuer %q revoked %s: %s", c.Subject.CommonName, r.At.UTC().Format(time.RFC3339), r.Reason))
		}
	}
	if len(probs) > 0 {
		return "", fmt.Errorf("certificate (%s): %s", v.certSource, strings.Join(probs, "; "))
	}
	return fmt.Sprintf("%s: CN = registration ID, serial %s, chains to the pinned root now and at +%s (not after %s), not revoked",
		v.certSource, u.CertSerial, warehouse, cert.NotAfter.UTC().Format(time.RFC3339)), nil
}

// flash: every target's firmware and bundle read back and hashed against
// the record.
func (v *verifier) checkFlash() (string, error) {
	u := v.unit
	spec := v.flashSpec()
	if spec == "" || (u.FlashTarget == "" && u.BundleSHA256 == "") {
		return "", errors.New("the unit was not flashed at provisioning (no flash target was configured): no firmware or credential bundle to read back")
	}
	if digest, err := hex.DecodeString(u.BundleSHA256); err != nil || len(digest) != sha256.Size {
		return "", fmt.Errorf("record has no bundle hash (%q)", u.BundleSHA256)
	}
	if u.FirmwareSHA256 == "" {
		return "", errors.New("record has no firmware hash")
	}
	// What the targets must hold: the recorded bundle (its digest) and
	// certificate (tpm-nv holds only that).
	expected, err := credbundle.Expected(credbundle.Recorded{Serial: u.Serial, Digest: u.BundleSHA256, CertDER: u.Cert})
	if err != nil {
		return "", fmt.Errorf("record: %w", err)
	}
	targets, err := flash.Open(spec, v.env.Config.Flash, v.tpm)
	if err != nil {
		return "", err
	}
	job := flash.Job{
		Serial:   u.Serial,
		Firmware: &flash.Firmware{SHA256: u.FirmwareSHA256},
		Bundle:   expected,
	}
	if v.env.Signer != nil {
		job.StationKey = v.env.Signer.Public()
	}
	var names []string
	for _, t := range targets {
		if err := t.ReadBack(v.ctx, job); err != nil {
			return "", err
		}
		names = append(names, t.Name())
	}
	return fmt.Sprintf("%s: firmware SHA-256 %s and bundle SHA-256 %s read back as recorded", strings.Join(names, ", "), u.FirmwareSHA256, u.BundleSHA256), nil
}

// dps-attestation: the station plays DPS. With the recorded (enrolled) EK
// and the SRK the TPM holds, it builds the challenge DPS sends; the TPM
// activates and imports it as the SDKs do, persists it where they do under
// the owner auth the device's DPS client has, and signs the SAS
// string-to-sign; the station checks the HMAC. The key is removed again.
func (v *verifier) checkDPS() (string, error) {
	u := v.unit
	cfg := v.env.Config
	if u.Attestation != enroll.AttestTPM {
		return fmt.Sprintf("not applicable: %s attestation (device-key and certificate prove it)", u.Attestation), nil
	}
	_, ekHandle, err := tpmops.EKTemplate(v.ekAlg())
	if err != nil {
		return "", err
	}
	srkHandle := v.srkHandle()
	srk, err := v.tpm.ReadPublic(srkHandle)
	if err != nil {
		return "", fmt.Errorf("reading the SRK the device would send: %w", err)
	}
	hmacKey := make([]byte, 32)
	if _, err := rand.Read(hmacKey); err != nil {
		return "", err
	}
	defer clear(hmacKey)
	ak, err := tpmops.MakeDPSChallenge(u.EKPublic, srk.Public, hmacKey)
	if err != nil {
		return "", fmt.Errorf("making the challenge: %w", err)
	}
	d := tpmops.DPSDevice{EK: ekHandle, SRK: srkHandle}
	var persistNote string
	if v.ownerAuthEscrowed() {
		// The device's client would be given its owner auth, which only the
		// escrow holder can decrypt: import and sign without persisting.
		persistNote = "not persisted (owner auth is escrowed; station cannot use it)"
	} else {
		d.Persist, persistNote, err = v.dpsPersistHandle()
		if err != nil {
			return "", err
		}
	}
	_, toSign := enroll.SASStringToSign(cfg.DPS.IDScope, u.RegistrationID, v.now.Add(time.Hour).Unix())
	if d.Persist != 0 {
		// Journal the key before it is persisted: a verify killed before it
		// removes the key leaves an entry naming exactly that key, and the
		// next run evicts it (and nothing else).
		forget, err := v.journalDPSKey(ak, d.Persist)
		if err != nil {
			return "", err
		}
		defer forget()
	}
	sig, err := v.tpm.DPSSign(ak, d, []byte(toSign))
	if err != nil {
		return "", err
	}
	want := hmac.New(sha256.New, hmacKey)
	want.Write([]byte(toSign))
	if !hmac.Equal(sig, want.Sum(nil)) {
		return "", errors.New("the TPM's HMAC of the SAS string-to-sign differs from DPS's")
	}
	detail := fmt.Sprintf("credential for EK %s and SRK %s activated, HMAC key imported, %s, SAS signature verified; key removed",
		handleHex(uint32(ekHandle)), handleHex(uint32(srkHandle)), persistNote)
	if ekHandle != tpmops.EKHandleRSA || srkHandle != tpmops.SRKHandleRSA {
		detail += " (note: the Azure C and Node SDKs read the EK at 0x81010001 and the SRK at 0x81000001, RSA)"
	}
	return detail, nil
}

// journalDPSKey records the DPS test key verify is about to persist at h on
// this unit's TPM. The returned func makes sure the key is gone (evicting it
// if DPSSign could not) and drops the entry; it keeps the entry when that
// cannot be confirmed, for the next run.
func (v *verifier) journalDPSKey(ak []byte, h tpmops.Handle) (func(), error) {
	name, err := tpmops.DPSKeyName(ak)
	if err != nil {
		return nil, err
	}
	ek := v.unit.EKSHA256
	j := store.DPSKeyJournal{Serial: v.unit.Serial, Handle: uint32(h), Name: name, At: time.Now().UTC()}
	if err := v.env.DB.Update(func(tx *bolt.Tx) error { return store.PutDPSKey(tx, ek, j) }); err != nil {
		return nil, fmt.Errorf("journaling the DPS test key: %w", err)
	}
	return func() {
		if _, err := v.tpm.RemoveDPSKey(h, name, nil); err != nil && !errors.Is(err, tpmops.ErrForeignKey) {
			return // still there, or the TPM stopped answering: the next run removes it
		}
		_ = v.env.DB.Update(func(tx *bolt.Tx) error { return store.DeleteDPSKey(tx, ek) })
	}, nil
}

// dpsPersistHandle picks where to persist the test key: 0x81000100, as the
// SDKs do, when free; else (something is there, which verify leaves alone:
// the SDKs would evict it) the first free handle after it, which exercises
// the same owner authorization.
func (v *verifier) dpsPersistHandle() (tpmops.Handle, string, error) {
	for h := tpmops.DPSKeyHandle; h < tpmops.DPSKeyHandle+0x100; h++ {
		_, err := v.tpm.ObjectName(h) // any key type: a DPS SDK's own key there is keyed-hash
		if errors.Is(err, tpmops.ErrHandleEmpty) {
			if h == tpmops.DPSKeyHandle {
				return h, "persisted at 0x81000100 with an empty owner auth", nil
			}
			return h, fmt.Sprintf("persisted at %s with an empty owner auth (0x81000100 already holds a key, left untouched)", handleHex(uint32(h))), nil
		}
		if err != nil {
			return 0, "", err
		}
	}
	return 0, "", errors.New("no free persistent handle in 0x81000100-0x810001ff")
}

// no-leaks: no transient object or session left in the TPM.
func (v *verifier) checkNoLeaks() (string, error) {
	hs, err := v.tpm.Transients()
	if err != nil {
		return "", err
	}
	if len(hs) > 0 {
		var ours, before []string
		for _, h := range hs {
			if v.transientsBefore[h] {
				before = append(before, handleHex(uint32(h)))
			} else {
				ours = append(ours, handleHex(uint32(h)))
			}
		}
		var parts []string
		if len(ours) > 0 {
			parts = append(parts, fmt.Sprintf("left by this verify: %s", strings.Join(ours, " ")))
		}
		if len(before) > 0 {
			parts = append(parts, fmt.Sprintf("already loaded before verify began: %s", strings.Join(before, " ")))
		}
		return "", fmt.Errorf("%d transient objects or sessions in the TPM (%s)", len(hs), strings.Join(parts, "; "))
	}
	return "no transient objects or sessions loaded", nil
}
