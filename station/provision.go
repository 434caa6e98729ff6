package station

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// The steps of the manufacturing timeline, in the order provision runs them.
// Ownership comes after every step that needs owner authorization (persisting
// keys, defining NV), so a crash never strands a unit whose owner auth the
// station cannot recover.
const (
	StepEK          = "ek"
	StepSRK         = "srk"
	StepDeviceKey   = "device-key"
	StepCertificate = "certificate"
	StepFlash       = "flash"
	StepOwnership   = "ownership"
	StepRecord      = "record"
)

// Steps lists the timeline in order.
var Steps = []string{StepEK, StepSRK, StepDeviceKey, StepCertificate, StepFlash, StepOwnership, StepRecord}

// Policy refusals (exit code 3), each with the operator's next step.
var (
	ErrRefused     = errors.New("refused by policy")
	ErrDuplicateEK = hint.Wrap(fmt.Errorf("%w: this TPM's EK is already recorded for another unit", ErrRefused),
		"this TPM is already provisioned under another serial: check the label, or quarantine a possible clone")
	ErrSerialOtherTPM = hint.Wrap(fmt.Errorf("%w: this serial is recorded with another TPM", ErrRefused),
		"the serial belongs to a unit with another TPM: check the label and the fixture")
	ErrOwnedElsewhere = hint.Wrap(fmt.Errorf("%w: the unit is owned by someone else", ErrRefused),
		"the TPM was already taken by someone else: set the unit aside; clearing it needs its owner")
	ErrRevoked = hint.Wrap(fmt.Errorf("%w: the unit is revoked", ErrRefused),
		"the unit is revoked and cannot be provisioned again")
	ErrDuplicateRegID = hint.Wrap(fmt.Errorf("%w: duplicate registration ID", ErrRefused),
		"DPS would see two units under one registration ID: check the serial label (IDs differing only in case are the same ID), or change dps.registration_id")
	ErrIssuerRevoked = hint.Wrap(fmt.Errorf("%w: the issuing CA is revoked", ErrRefused),
		"issue a new line intermediate (station ca issue-intermediate), point pki.issuer_cert and pki.issuer_key at it, then re-run provision")
)

// ErrBadSerial means a serial number is unusable (exit 2).
var ErrBadSerial = errors.New("invalid serial number")

// ValidateSerial checks a unit serial. Serials reach file names, certificate
// SANs and flashing tools' arguments, so the flash package's rule (letters,
// digits and . _ -, starting with a letter or digit, no "..", at most 64) is
// the station's rule.
func ValidateSerial(s string) error {
	if err := credbundle.ValidSerial(s); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSerial, err)
	}
	return nil
}

// Request is one unit to provision.
type Request struct {
	Serial    string
	TPMAddr   string      // tpm.address when empty
	TPM       *tpmops.TPM // an already open TPM (station demo's simulators); TPMAddr is then only recorded
	FlashSpec string      // flash.target when empty
	Force     bool        // overwrite a flash target holding another unit's bundle
	Observer  Observer    // hears each step as it starts and ends (nil: nobody)
}

// Result is the outcome of one unit, as `station provision -o json` prints it.
type Result struct {
	Serial         string             `json:"serial"`
	RegistrationID string             `json:"registration_id,omitempty"`
	Result         string             `json:"result"` // pass | already-provisioned | fail
	FailedStep     string             `json:"failed_step,omitempty"`
	Error          string             `json:"error,omitempty"`
	Resumed        bool               `json:"resumed,omitempty"`
	StepsMs        map[string]float64 `json:"steps_ms"`
	TPMMs          float64            `json:"tpm_ms"`
	TotalMs        float64            `json:"total_ms"`
}

// Result values.
const (
	ResultPass    = "pass"
	ResultAlready = "already-provisioned"
	ResultFail    = "fail"
)

// StepError is a failure of one unit at one step. It unwraps to the cause.
type StepError struct {
	Serial string
	Step   string
	Err    error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("unit %s: step %s: %v", e.Serial, e.Step, e.Err)
}

// Unwrap returns the cause with provision's hint for it (withStepHint).
func (e *StepError) Unwrap() error { return withStepHint(e.Serial, e.Step, e.Err) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Provision runs (or resumes) the manufacturing timeline on one unit.
func (p *Provisioner) Provision(ctx context.Context, req Request) (res *Result, err error) {
	start := time.Now()
	res = &Result{Serial: req.Serial, StepsMs: map[string]float64{}}
	r := &unitRun{p: p, req: req, res: res, obs: observer(req.Observer)}
	defer func() {
		res.TotalMs = ms(time.Since(start))
		if r.tpm != nil {
			res.TPMMs = ms(r.tpm.Stats().Busy)
		}
		if err != nil {
			res.Result = ResultFail
			res.Error = err.Error()
			var se *StepError
			if errors.As(err, &se) {
				res.FailedStep = se.Step
			}
		}
	}()
	if err := ValidateSerial(req.Serial); err != nil {
		return res, err
	}
	if r.flashSpec() != "" && p.firmware == nil {
		return res, &configs.Error{Key: string(configs.KeyFirmware), Err: errors.New("flashing needs the release image and its published SHA-256 (firmware.sha256): the credential bundle carries the firmware's hash")}
	}
	if err := r.load(); err != nil {
		return res, err
	}
	if r.u != nil {
		res.RegistrationID = r.u.RegistrationID
		if r.u.Status == store.StatusRevoked {
			return res, &StepError{req.Serial, StepEK, ErrRevoked}
		}
	}
	// From here on every failure is an attempt on the unit: audited, with
	// how long the failed step took.
	t0 := time.Now()
	// Refusals that need no TPM come before the TPM is opened, so a refused
	// unit's TPM is left exactly as it came.
	if r.u == nil || !r.u.StepDone(StepCertificate) {
		if err := r.p.issuerUsable(); err != nil {
			return res, r.refuse(StepCertificate, t0, err)
		}
	}
	if r.u == nil && p.env.Config.DPS.Attestation != enroll.AttestTPM {
		// The registration ID comes from the serial: a clash is known now.
		if id, err := p.registrationID(req.Serial, nil); err == nil {
			if err := r.regIDFree(id); err != nil {
				return res, r.refuse(StepEK, t0, err)
			}
		}
	}
	if err := r.open(); err != nil {
		return res, r.refuse(StepEK, t0, err)
	}
	defer r.close()
	if r.u != nil && r.u.EKPublic != nil {
		// The serial is recorded: the unit on the fixture must be that unit.
		if err := r.sameTPM(); err != nil {
			return res, r.refuse(StepEK, t0, err)
		}
		// What a killed verify or provision left on it goes first.
		cleaned, err := clearLeftovers(r.p.env, r.tpm, r.u)
		if err != nil {
			return res, r.refuse(StepEK, t0, err)
		}
		for _, c := range cleaned {
			r.obs.Note(req.Serial, c)
		}
		if r.u.Status == store.StatusProvisioned {
			res.Result = ResultAlready
			return res, nil
		}
		res.Resumed = true
	}
	// The first change to the TPM comes next: the database it will be
	// recorded in must still be the one at the configured path.
	if err := p.env.DB.CheckPath(); err != nil {
		return res, &StepError{req.Serial, StepEK, err}
	}
	if err := r.preflight(); err != nil {
		return res, r.fail(StepEK, t0, err)
	}
	for _, step := range Steps {
		if r.u != nil && r.u.StepDone(step) {
			continue
		}
		// An interrupt (Ctrl-C, SIGTERM) stops the run here, between
		// steps, or kills the flash tool: a TPM command is never cut.
		if err := ctx.Err(); err != nil {
			return res, r.fail(step, time.Now(), err)
		}
		r.obs.StepStarted(req.Serial, step)
		t0 := time.Now()
		err := r.step(ctx, step, t0)
		r.obs.StepDone(req.Serial, step, time.Since(t0), err)
		if err != nil {
			return res, err
		}
	}
	res.Result = ResultPass
	res.RegistrationID = r.u.RegistrationID
	return res, nil
}

// step runs one step of the timeline, journaled before and after.
func (r *unitRun) step(ctx context.Context, step string, t0 time.Time) error {
	if r.u != nil {
		// Journaled as begun by the last step's commit, or now; either way
		// the database must still be the one at the configured path before
		// the step changes the TPM.
		check := r.p.env.DB.CheckPath
		if r.begun != step {
			check = func() error { return r.begin(step) }
		}
		if err := check(); err != nil {
			return &StepError{r.req.Serial, step, err}
		}
	}
	r.begun = ""
	events, err := r.run(ctx, step)
	if err != nil {
		return r.fail(step, t0, err)
	}
	d := time.Since(t0)
	r.res.StepsMs[step] = ms(d)
	if err := r.finish(step, t0, d, events); err != nil {
		return &StepError{r.req.Serial, step, err}
	}
	return nil
}

// unitRun is one provisioning run of one unit.
type unitRun struct {
	p      *Provisioner
	req    Request
	res    *Result
	obs    Observer
	u      *store.Unit // nil until the EK step records the unit
	tpm    *tpmops.TPM
	opened bool // the run opened tpm and must close it

	ek, srk, devKey tpmops.Key
	perm            tpmops.Permanent
	secrets         *tpmops.Secrets // nil until a step sends a secret
	// begun is the step the last step's commit journaled as begun (one
	// commit for "done" and "next begun": nothing happens between them).
	begun string
}

func (r *unitRun) load() error {
	return r.p.env.DB.View(func(tx *bolt.Tx) error {
		u, err := store.GetUnit(tx, r.req.Serial)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		r.u = u
		return err
	})
}

func (r *unitRun) addr() string {
	if r.req.TPMAddr != "" {
		return r.req.TPMAddr
	}
	return r.p.env.Config.TPM.Address
}

func (r *unitRun) open() error {
	if r.req.TPM != nil {
		r.tpm = r.req.TPM
		return nil
	}
	t, err := tpmops.Open(r.addr())
	if err != nil {
		return err
	}
	r.tpm, r.opened = t, true
	return nil
}

// secretSession is the session through which the unit's secrets reach its
// TPM (tpmops.Secrets: one salt decryption per unit, not one per secret),
// started on first use, salted to the SRK, and flushed when the run ends.
func (r *unitRun) secretSession() (*tpmops.Secrets, error) {
	if r.secrets.Closed() {
		s, err := r.tpm.Secrets(r.srk)
		if err != nil {
			return nil, err
		}
		r.secrets = s
	}
	return r.secrets, nil
}

func (r *unitRun) close() {
	if err := r.secrets.Close(); err != nil {
		r.obs.Note(r.req.Serial, err.Error()+" (the next run on this TPM flushes it)")
	}
	if r.opened {
		r.tpm.Close()
	}
}

// sameTPM checks that the TPM holds the recorded EK at its standard handle
// (a ReadPublic: no key is created).
func (r *unitRun) sameTPM() error {
	_, h, err := tpmops.EKTemplate(tpmops.Alg(r.u.EKType))
	if err != nil {
		return err
	}
	k, err := r.tpm.ReadPublic(h)
	if err != nil && !errors.Is(err, tpmops.ErrHandleEmpty) {
		return err
	}
	if err != nil {
		// Nothing there: a fresh or cleared TPM, not one holding another key.
		return fmt.Errorf("%w (recorded EK %s; this TPM has no EK persisted at %s): is the right unit on the fixture?", ErrSerialOtherTPM, short(r.u.EKSHA256), handleHex(uint32(h)))
	}
	if !bytes.Equal(k.Public, r.u.EKPublic) {
		return fmt.Errorf("%w (recorded EK %s, not the one at %s on this TPM): is the right unit on the fixture?", ErrSerialOtherTPM, short(r.u.EKSHA256), handleHex(uint32(h)))
	}
	return nil
}

// recordedElsewhere returns the serial another unit was provisioned under
// when this TPM's persisted EK is already recorded, or "".
func (r *unitRun) recordedElsewhere() string {
	_, h, err := tpmops.EKTemplate(tpmops.Alg(r.p.env.Config.TPM.EK))
	if err != nil {
		return ""
	}
	k, err := r.tpm.ReadPublic(h)
	if err != nil {
		return ""
	}
	var serial string
	r.p.env.DB.View(func(tx *bolt.Tx) error {
		serial = store.SerialByEK(tx, sha256hex(k.Public))
		return nil
	})
	if serial == r.req.Serial {
		return ""
	}
	return serial
}

// preflight clears what a killed run left loaded, and refuses a TPM that
// someone else owns before anything is written.
func (r *unitRun) preflight() error {
	if n, err := r.tpm.FlushStale(); err != nil {
		return err
	} else if n > 0 {
		r.obs.Note(r.req.Serial, fmt.Sprintf("flushed %d stale transient handle(s)", n))
	}
	perm, err := r.tpm.Permanent()
	if err != nil {
		return err
	}
	r.perm = perm
	if perm.InLockout {
		return fmt.Errorf("%w: the TPM is in dictionary-attack lockout", tpmops.ErrLockout)
	}
	if perm.EndorsementAuthSet {
		return fmt.Errorf("%w: endorsement auth is set (DPS attestation needs it empty)", ErrOwnedElsewhere)
	}
	ours := map[string]bool{}
	if r.u != nil {
		for _, e := range r.u.Escrows {
			ours[e.Hierarchy] = true
		}
	}
	if (perm.LockoutAuthSet && !ours["lockout"]) || (perm.OwnerAuthSet && !ours["owner"]) {
		if other := r.recordedElsewhere(); other != "" {
			return fmt.Errorf("%w (unit %s)", ErrDuplicateEK, other)
		}
	}
	if perm.LockoutAuthSet && !ours["lockout"] {
		return fmt.Errorf("%w: lockout auth is set and station did not set it", ErrOwnedElsewhere)
	}
	if perm.OwnerAuthSet && !ours["owner"] {
		return fmt.Errorf("%w: owner auth is set and station did not set it", ErrOwnedElsewhere)
	}
	return nil
}

// nextStep is the step of the timeline after step that the unit has not
// done ("" after the last).
func (r *unitRun) nextStep(step string) string {
	i := slices.Index(Steps, step)
	for _, next := range Steps[i+1:] {
		if !r.u.StepDone(next) {
			return next
		}
	}
	return ""
}

// begin journals that step is about to run (durably: the TPM may change next).
func (r *unitRun) begin(step string) error {
	r.markStarted(step)
	return r.commit(nil)
}

func (r *unitRun) markStarted(step string) {
	now := time.Now().UTC()
	if s := r.u.Step(step); s != nil {
		s.State, s.StartedAt, s.Error = store.StepStarted, now, ""
		s.Attempts++
		return
	}
	r.u.Steps = append(r.u.Steps, store.Step{Name: step, State: store.StepStarted, StartedAt: now, Attempts: 1})
}

// finish journals the step as done with its audit records.
func (r *unitRun) finish(step string, t0 time.Time, d time.Duration, events []audit.Event) error {
	if r.u.Step(step) == nil { // the EK step creates the record
		r.u.Steps = append(r.u.Steps, store.Step{Name: step, StartedAt: t0.UTC(), Attempts: 1})
	}
	s := r.u.Step(step)
	s.State, s.FinishedAt, s.Millis = store.StepDone, time.Now().UTC(), ms(d)
	if len(events) == 0 {
		events = []audit.Event{{Type: "provision." + step}}
	}
	for i := range events {
		events[i].Payload = withMs(events[i].Payload, ms(d))
	}
	if next := r.nextStep(step); next != "" {
		// The next step is journaled as begun in this commit, as begin
		// would in its own: a run stopped before it starts leaves it
		// started, which resumes like a step cut short.
		r.markStarted(next)
		r.begun = next
	}
	if step != StepRecord {
		return r.commit(events)
	}
	return r.commit(events, func(tx *bolt.Tx) error {
		_, err := r.p.env.Log.Checkpoint(tx) // a signed checkpoint after every unit
		return err
	})
}

func withMs(payload any, ms float64) any {
	m, ok := payload.(map[string]any)
	if !ok {
		m = map[string]any{}
		if payload != nil {
			m["detail"] = payload
		}
	}
	m["ms"] = ms
	return m
}

// fail journals a failed step that began at t0 (if the unit is recorded)
// and audits it, with how long it ran.
func (r *unitRun) fail(step string, t0 time.Time, err error) error {
	return r.failed(step, t0, err, true)
}

// refuse audits a failed attempt that never reached a step of the
// timeline (the TPM unreachable, another unit on the fixture): the unit's
// journal is left as it was.
func (r *unitRun) refuse(step string, t0 time.Time, err error) error {
	return r.failed(step, t0, err, false)
}

func (r *unitRun) failed(step string, t0 time.Time, err error, journal bool) error {
	se := &StepError{Serial: r.req.Serial, Step: step, Err: err}
	d := ms(time.Since(t0))
	r.res.StepsMs[step] = d
	ev := audit.Event{Type: "provision.failed", Payload: map[string]any{"step": step, "cause": CauseOf(step, err), "error": err.Error(), "ms": d}}
	if r.u != nil && journal {
		s := r.u.Step(step)
		switch {
		case s == nil:
		case errors.Is(err, context.Canceled):
			// Interrupted, not failed: the step stays started, as a kill
			// leaves it, and the unit is resumable.
			if s.State == store.StepStarted {
				s.Error = "interrupted"
			}
		default:
			s.State, s.FinishedAt, s.Error, s.Millis = store.StepFailed, time.Now().UTC(), err.Error(), d
		}
		if cerr := r.commit([]audit.Event{ev}); cerr != nil {
			return errors.Join(se, cerr)
		}
		return se
	}
	ev.Serial, ev.Operator = r.req.Serial, r.p.env.Operator()
	if cerr := r.p.env.DB.Update(func(tx *bolt.Tx) error {
		_, err := r.p.env.Log.Append(tx, ev)
		return err
	}); cerr != nil {
		return errors.Join(se, cerr)
	}
	return se
}

// commit writes the unit record and its audit events in one transaction.
func (r *unitRun) commit(events []audit.Event, extra ...func(*bolt.Tx) error) error {
	return r.p.env.DB.Update(func(tx *bolt.Tx) error {
		if err := r.checkUnique(tx); err != nil {
			return err
		}
		if err := store.PutUnit(tx, r.u); err != nil {
			return err
		}
		for _, e := range r.u.Escrows {
			if !e.Pending { // applied: its sealed copy has served
				if err := store.DeletePendingSeal(tx, r.u.Serial, e.Hierarchy); err != nil {
					return err
				}
			}
		}
		for _, e := range events {
			e.Serial, e.Operator = r.u.Serial, r.p.env.Operator()
			if _, err := r.p.env.Log.Append(tx, e); err != nil {
				return err
			}
		}
		for _, f := range extra {
			if err := f(tx); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkUnique refuses an EK or certificate already recorded for another unit
// (checked inside the writing transaction, so parallel fixtures cannot race).
func (r *unitRun) checkUnique(tx *bolt.Tx) error {
	if s := store.SerialByEK(tx, r.u.EKSHA256); r.u.EKSHA256 != "" && s != "" && s != r.u.Serial {
		return fmt.Errorf("%w (unit %s)", ErrDuplicateEK, s)
	}
	if s := store.SerialByCert(tx, r.u.CertSerial); r.u.CertSerial != "" && s != "" && s != r.u.Serial {
		return fmt.Errorf("certificate serial %s is already recorded for unit %s", r.u.CertSerial, s)
	}
	return regIDFreeIn(tx, r.u.RegistrationID, r.u.Serial)
}

// regIDFree refuses a registration ID that DPS would take for another
// unit's (DPS compares registration IDs case-insensitively).
func (r *unitRun) regIDFree(id string) error {
	return r.p.env.DB.View(func(tx *bolt.Tx) error { return regIDFreeIn(tx, id, r.req.Serial) })
}

func regIDFreeIn(tx *bolt.Tx, id, serial string) error {
	if id == "" {
		return nil
	}
	if s := store.SerialByRegistrationID(tx, id); s != "" && s != serial {
		return fmt.Errorf("%w: %q is already the registration ID of unit %s (DPS does not tell IDs apart by case)", ErrDuplicateRegID, id, s)
	}
	return nil
}

func (r *unitRun) run(ctx context.Context, step string) ([]audit.Event, error) {
	switch step {
	case StepEK:
		return r.stepEK()
	case StepSRK:
		return r.stepSRK()
	case StepDeviceKey:
		return r.stepDeviceKey()
	case StepCertificate:
		return r.stepCertificate()
	case StepFlash:
		return r.stepFlash(ctx)
	case StepOwnership:
		return r.stepOwnership()
	case StepRecord:
		return r.stepRecord()
	}
	return nil, fmt.Errorf("unknown step %q", step)
}

// sha256hex is the hex SHA-256 of b, as records and reports write it.
func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// handleHex writes a TPM handle as reports and errors do ("0x81000001").
func handleHex(h uint32) string { return fmt.Sprintf("0x%08x", h) }

// ekCertLookup is the search for the certificate of one EK and its verdict.
type ekCertLookup struct {
	found   *tpmops.EKCertificate
	nvChain []*x509.Certificate
	findErr error
	// cert is set when found chains to a vendor root and certifies the EK;
	// verifyErr says why not otherwise.
	cert      *x509.Certificate
	verifyErr error
}

// lookupEKCert finds the certificate that certifies this very EK (from NV,
// any index, else from the offline folder; the TPM's own intermediates
// help chain) and verifies it against the vendor roots.
func (r *unitRun) lookupEKCert(ek crypto.PublicKey) ekCertLookup {
	var l ekCertLookup
	l.found, l.nvChain, l.findErr = r.tpm.FindEKCert(ek, r.p.env.Config.File(configs.KeyEKCertDir))
	if l.found != nil {
		l.cert, l.verifyErr = tpmops.VerifyEKCert(l.found.DER, ek, r.p.vendorRoots, l.nvChain, time.Now())
	}
	return l
}

// ensureEK returns the configured EK, persisted at its standard handle, and
// its certificate lookup. An RSA CreatePrimary costs seconds on a discrete
// TPM, so an EK already persisted is proven by reading when that can be
// done: a key of the standard template's shape whose unique field is the
// key a vendor-rooted certificate certifies (see tpmops.ReadEK). Otherwise
// EnsureEK derives the EK with CreatePrimary: to compare (a persisted key
// without such a certificate) or to persist it (an empty handle).
func (r *unitRun) ensureEK(alg tpmops.Alg) (ek tpmops.Key, persisted bool, proof string, l ekCertLookup, err error) {
	k, err := r.tpm.ReadEK(alg)
	switch {
	case err == nil:
		l = r.lookupEKCert(k.Pub)
		if l.cert != nil {
			return k, false, "read, certified", l, nil
		}
	case !errors.Is(err, tpmops.ErrHandleEmpty):
		return tpmops.Key{}, false, "", l, err
	}
	ek, persisted, err = r.tpm.EnsureEK(alg, nil)
	if err != nil {
		return tpmops.Key{}, false, "", l, err
	}
	if !bytes.Equal(ek.Public, k.Public) {
		l = r.lookupEKCert(ek.Pub)
	}
	return ek, persisted, "created", l, nil
}

func (r *unitRun) stepEK() ([]audit.Event, error) {
	cfg := r.p.env.Config
	alg := tpmops.Alg(cfg.TPM.EK)
	ek, persisted, proof, l, err := r.ensureEK(alg)
	if err != nil {
		return nil, err
	}
	r.ek = ek
	switch {
	case errors.Is(l.findErr, tpmops.ErrNoEKCert) && !cfg.TPM.RequireEKCert:
	case errors.Is(l.findErr, tpmops.ErrUntrustedEKCert) && !cfg.TPM.RequireEKCert:
	case l.findErr != nil:
		return nil, l.findErr
	}
	var (
		certDER []byte
		issuer  string
	)
	certInfo := map[string]any{}
	if l.found != nil {
		certDER = l.found.DER
		certInfo = map[string]any{"source": l.found.Source, "tcg_header": l.found.Header, "padding": l.found.Padding, "nv_intermediates": len(l.nvChain)}
		if l.verifyErr != nil && cfg.TPM.RequireEKCert {
			return nil, l.verifyErr
		}
		if l.cert != nil {
			issuer = l.cert.Issuer.String()
		}
	}
	ekHash := sha256hex(ek.Public)
	if r.u != nil {
		if r.u.EKSHA256 != ekHash {
			return nil, fmt.Errorf("%w (recorded EK %s, this TPM's %s): is the right unit on the fixture?", ErrSerialOtherTPM, short(r.u.EKSHA256), short(ekHash))
		}
	} else {
		if err := r.p.env.DB.View(func(tx *bolt.Tx) error {
			if s := store.SerialByEK(tx, ekHash); s != "" {
				return fmt.Errorf("%w (unit %s)", ErrDuplicateEK, s)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	regID, err := r.p.registrationID(r.req.Serial, ek.Public)
	if err != nil {
		return nil, err
	}
	if err := r.regIDFree(regID); err != nil {
		return nil, err
	}
	if r.u == nil {
		r.u = &store.Unit{
			Serial:          r.req.Serial,
			StationID:       cfg.Station.ID,
			Operator:        r.p.env.Operator(),
			Status:          store.StatusInProgress,
			TPMAddress:      r.addr(),
			CreatedAt:       time.Now().UTC(),
			Attestation:     cfg.DPS.Attestation,
			OwnerAuthPolicy: cfg.Ownership.OwnerAuth,
		}
	}
	r.u.RegistrationID, r.u.DeviceID = regID, regID
	r.u.EKType, r.u.EKPublic, r.u.EKSHA256, r.u.EKCert = cfg.TPM.EK, ek.Public, ekHash, certDER
	return []audit.Event{{Type: "provision.ek", Payload: map[string]any{
		"ek_sha256": ekHash, "ek_type": cfg.TPM.EK, "ek_cert": certDER != nil, "ek_cert_issuer": issuer,
		"ek_cert_sha256": hashOrEmpty(certDER), "ek_cert_found": certInfo, "persisted_now": persisted, "ek_proof": proof, "registration_id": regID,
	}}}, nil
}

func hashOrEmpty(b []byte) string {
	if b == nil {
		return ""
	}
	return sha256hex(b)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func (r *unitRun) stepSRK() ([]audit.Event, error) {
	srk, persisted, err := r.tpm.EnsureSRK(tpmops.Alg(r.p.env.Config.TPM.SRK), nil, r.u.SRKName)
	if err != nil {
		return nil, err
	}
	r.srk = srk
	r.u.SRKHandle, r.u.SRKPublic, r.u.SRKName = uint32(srk.Handle), srk.Public, srk.Name
	return []audit.Event{{Type: "provision.srk", Payload: map[string]any{
		"handle": fmt.Sprintf("0x%08x", uint32(srk.Handle)), "name": hex.EncodeToString(srk.Name), "persisted_now": persisted,
	}}}, nil
}

// ensureSRK reloads the SRK when a resumed run skipped its step.
func (r *unitRun) ensureSRK() error {
	if r.srk.Public != nil {
		return nil
	}
	k, err := r.tpm.ReadPublic(tpmops.Handle(r.u.SRKHandle))
	if err != nil {
		return fmt.Errorf("reading the recorded SRK: %w", err)
	}
	if !bytes.Equal(k.Name, r.u.SRKName) {
		return fmt.Errorf("%w: the SRK at 0x%08x is not the one recorded", tpmops.ErrForeignKey, r.u.SRKHandle)
	}
	r.srk = k
	return nil
}

func (r *unitRun) stepDeviceKey() ([]audit.Event, error) {
	if err := r.ensureSRK(); err != nil {
		return nil, err
	}
	h := tpmops.Handle(r.p.env.Config.TPM.DeviceKeyHandle)
	existing, err := r.tpm.ReadPublic(h)
	switch {
	case err == nil:
		// Something is there: ours only if it is the key this unit's journal
		// says was being persisted when the last run stopped.
		if r.u.DeviceKeyPending == nil || !bytes.Equal(existing.Public, r.u.DeviceKeyPending) {
			return nil, fmt.Errorf("%w: handle %s holds a key station did not create; it is left alone (free the handle or set tpm.device_key_handle)", tpmops.ErrForeignKey, handleHex(uint32(h)))
		}
		r.devKey = existing
	case errors.Is(err, tpmops.ErrHandleEmpty):
		pub, priv, err := r.tpm.CreateDeviceKey(r.srk)
		if err != nil {
			return nil, err
		}
		// Journal the key before persisting it: the public identifies it at
		// the handle on resume, the private (wrapped by the SRK) becomes
		// the device's TSS2 key file at the flash step.
		r.u.DeviceKeyPending, r.u.DeviceKeyPrivate = pub, priv
		if err := r.commit(nil); err != nil {
			return nil, err
		}
		k, err := r.tpm.PersistDeviceKey(r.srk, pub, priv, h, nil)
		if err != nil {
			return nil, err
		}
		r.devKey = k
	default:
		return nil, err
	}
	r.u.DeviceKeyHandle, r.u.DeviceKeyPublic, r.u.DeviceKeyPending = uint32(h), r.devKey.Public, nil
	return []audit.Event{{Type: "provision.device-key", Payload: map[string]any{
		"handle": handleHex(uint32(h)), "name": hex.EncodeToString(r.devKey.Name), "public_sha256": sha256hex(r.devKey.Public),
	}}}, nil
}

// ensureDeviceKey reloads the device key when a resumed run skipped its step.
func (r *unitRun) ensureDeviceKey() error {
	if r.devKey.Public != nil {
		return nil
	}
	k, err := r.tpm.ReadPublic(tpmops.Handle(r.u.DeviceKeyHandle))
	if err != nil {
		return fmt.Errorf("reading the recorded device key: %w", err)
	}
	if !bytes.Equal(k.Public, r.u.DeviceKeyPublic) {
		return fmt.Errorf("%w: the key at 0x%08x is not the one recorded", tpmops.ErrForeignKey, r.u.DeviceKeyHandle)
	}
	r.devKey = k
	return nil
}

func (r *unitRun) stepRecord() ([]audit.Event, error) {
	r.u.Status = store.StatusProvisioned
	r.u.ProvisionedAt = time.Now().UTC()
	steps := map[string]float64{}
	for _, s := range r.u.Steps {
		steps[s.Name] = s.Millis
	}
	return []audit.Event{{Type: "provision.done", Payload: map[string]any{
		"registration_id": r.u.RegistrationID, "cert_serial": r.u.CertSerial, "cert_sha256": r.u.CertSHA256,
		"ek_sha256": r.u.EKSHA256, "attestation": r.u.Attestation, "steps_ms": steps,
	}}}, nil
}

// randomAuth returns a fresh 32-byte authorization value.
func randomAuth() ([]byte, error) {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}
