package tpmops

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Permanent is TPM_PT_PERMANENT decoded (TPMA_PERMANENT; go-tpm v0.9.8 has
// no type for it).
type Permanent struct {
	OwnerAuthSet       bool // bit 0
	EndorsementAuthSet bool // bit 1
	LockoutAuthSet     bool // bit 2
	InLockout          bool // bit 9
	Raw                uint32
}

// Permanent reads TPM_PT_PERMANENT.
func (t *TPM) Permanent() (Permanent, error) {
	v, err := t.property(tpm2.TPMPTPermanent)
	if err != nil {
		return Permanent{}, err
	}
	return Permanent{
		OwnerAuthSet:       v&(1<<0) != 0,
		EndorsementAuthSet: v&(1<<1) != 0,
		LockoutAuthSet:     v&(1<<2) != 0,
		InLockout:          v&(1<<9) != 0,
		Raw:                v,
	}, nil
}

// DAParams are the dictionary-attack parameters.
type DAParams struct {
	MaxTries               uint32 // TPM_PT_MAX_AUTH_FAIL
	RecoverySeconds        uint32 // TPM_PT_LOCKOUT_INTERVAL
	LockoutRecoverySeconds uint32 // TPM_PT_LOCKOUT_RECOVERY
}

// DAParams reads the dictionary-attack parameters.
func (t *TPM) DAParams() (DAParams, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTMaxAuthFail),
		PropertyCount: 3,
	}.Execute(t.tr)
	if err != nil {
		return DAParams{}, fmt.Errorf("reading dictionary-attack parameters: %w", classify(err))
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return DAParams{}, fmt.Errorf("decoding dictionary-attack parameters: %w", err)
	}
	var p DAParams
	seen := 0
	for _, tp := range props.TPMProperty {
		switch tp.Property {
		case tpm2.TPMPTMaxAuthFail:
			p.MaxTries = tp.Value
		case tpm2.TPMPTLockoutInterval:
			p.RecoverySeconds = tp.Value
		case tpm2.TPMPTLockoutRecovery:
			p.LockoutRecoverySeconds = tp.Value
		default:
			continue
		}
		seen++
	}
	if seen != 3 {
		return DAParams{}, errors.New("TPM did not report all dictionary-attack parameters")
	}
	return p, nil
}

// Command codes the v0.9.8 direct API lacks.
const (
	ccDictionaryAttackLockReset  = 0x00000139
	ccDictionaryAttackParameters = 0x0000013A
)

// SetDAParams runs TPM2_DictionaryAttackParameters with the lockout
// hierarchy's auth (a password session). The lockout auth is itself
// dictionary-attack protected: a wrong one counts as a failure.
func (t *TPM) SetDAParams(lockoutAuth []byte, p DAParams) error {
	params := binary.BigEndian.AppendUint32(nil, p.MaxTries)
	params = binary.BigEndian.AppendUint32(params, p.RecoverySeconds)
	params = binary.BigEndian.AppendUint32(params, p.LockoutRecoverySeconds)
	if err := t.lockoutCommand(ccDictionaryAttackParameters, lockoutAuth, params); err != nil {
		return fmt.Errorf("setting dictionary-attack parameters: %w", err)
	}
	return nil
}

// lockoutCommand marshals a command whose one handle is TPM_RH_LOCKOUT,
// authorised by a password session, and checks the response code.
func (t *TPM) lockoutCommand(cc uint32, auth, params []byte) error {
	if len(auth) > 64 {
		return errors.New("lockout auth too long")
	}
	// TPMS_AUTH_COMMAND: session handle, empty nonce, attributes
	// (continueSession), hmac = the password.
	sess := binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRSPW))
	sess = binary.BigEndian.AppendUint16(sess, 0)
	sess = append(sess, 0x01)
	sess = binary.BigEndian.AppendUint16(sess, uint16(len(auth)))
	sess = append(sess, auth...)

	cmd := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTSessions))
	cmd = binary.BigEndian.AppendUint32(cmd, 0) // size, below
	cmd = binary.BigEndian.AppendUint32(cmd, cc)
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(tpm2.TPMRHLockout))
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(len(sess)))
	cmd = append(cmd, sess...)
	cmd = append(cmd, params...)
	binary.BigEndian.PutUint32(cmd[2:6], uint32(len(cmd)))
	defer clear(cmd) // it holds the password
	rsp, err := t.tr.Send(cmd)
	if err != nil {
		return err
	}
	if len(rsp) < 10 {
		return fmt.Errorf("%w: short response", ErrUnreachable)
	}
	if rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])); rc != tpm2.TPMRCSuccess {
		return classify(rc)
	}
	return nil
}

// Hierarchy names a hierarchy whose authorization ChangeAuth sets.
type Hierarchy int

// Hierarchies.
const (
	Owner Hierarchy = iota
	Lockout
	Endorsement
)

func (h Hierarchy) handle() (tpm2.TPMHandle, error) {
	switch h {
	case Owner:
		return tpm2.TPMRHOwner, nil
	case Lockout:
		return tpm2.TPMRHLockout, nil
	case Endorsement:
		return tpm2.TPMRHEndorsement, nil
	}
	return 0, fmt.Errorf("unknown hierarchy %d", int(h))
}

func (h Hierarchy) String() string {
	switch h {
	case Owner:
		return "owner"
	case Lockout:
		return "lockout"
	case Endorsement:
		return "endorsement"
	}
	return fmt.Sprintf("hierarchy(%d)", int(h))
}

// ChangeAuth sets hierarchy h's authorization from oldAuth to newAuth
// (TPM2_HierarchyChangeAuth). The hierarchy is authorised with a password
// session (oldAuth); a second, one-shot HMAC session salted to saltKey (a
// loaded or persistent decryption key such as the EK or SRK, whose public
// area the caller trusts) encrypts newAuth with AES-128-CFB, so the new
// secret never crosses the bus in clear. newAuth is at most 32 bytes.
func (t *TPM) ChangeAuth(h Hierarchy, oldAuth, newAuth []byte, saltKey Key) error {
	enc, err := encryptIn(saltKey)
	if err != nil {
		return err
	}
	return t.changeAuth(h, oldAuth, newAuth, enc)
}

// changeAuth is ChangeAuth with enc, the session that encrypts newAuth.
func (t *TPM) changeAuth(h Hierarchy, oldAuth, newAuth []byte, enc tpm2.Session) error {
	hh, err := h.handle()
	if err != nil {
		return err
	}
	if len(newAuth) > 32 {
		return fmt.Errorf("new %s auth longer than 32 bytes", h)
	}
	_, err = tpm2.HierarchyChangeAuth{
		AuthHandle: tpm2.AuthHandle{Handle: hh, Auth: tpm2.PasswordAuth(oldAuth)},
		NewAuth:    tpm2.TPM2BAuth{Buffer: newAuth},
	}.Execute(t.tr, enc)
	if err != nil {
		return fmt.Errorf("changing the %s auth: %w", h, classify(err))
	}
	return nil
}

// ProveAuth makes the TPM prove that hierarchy h's authorization is auth,
// without auth crossing the bus: TPM2_HierarchyChangeAuth(h, newAuth=auth),
// authorized by an HMAC session salted to saltKey and keyed with auth (the
// TPM checks an HMAC only the holder of its auth value can make), the new
// value encrypted like ChangeAuth's. When it succeeds nothing changed: the
// value set is the value held. It returns nil when the TPM holds auth, an
// error wrapping ErrBadAuth when it holds another value, and one wrapping
// ErrLockout when the hierarchy refuses every authorization for now.
//
// What a wrong value costs (TPM 2.0 Part 1, dictionary attack protection;
// the reference code's IncrementLockout): the owner and endorsement
// hierarchies are exempt, a wrong value is a plain TPM_RC_BAD_AUTH. A wrong
// lockoutAuth, however it is presented (password, HMAC session, or any
// session merely bound to TPM_RH_LOCKOUT), disables lockout authorization
// for TPM_PT_LOCKOUT_RECOVERY seconds (until the next TPM Reset when that is
// 0); the failed-tries counter and the other hierarchies are untouched. No
// command tests lockoutAuth without that risk, so a caller proves a given
// lockout value at most once.
func (t *TPM) ProveAuth(h Hierarchy, auth []byte, saltKey Key) error {
	hh, err := h.handle()
	if err != nil {
		return err
	}
	if len(auth) == 0 || len(auth) > 32 {
		return fmt.Errorf("proving the %s auth: want a value of 1 to 32 bytes", h)
	}
	pubArea, err := saltPublic(saltKey)
	if err != nil {
		return err
	}
	sess := tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(auth),
		tpm2.Salted(saltKey.Handle, *pubArea),
		tpm2.AESEncryption(128, tpm2.EncryptIn))
	_, err = tpm2.HierarchyChangeAuth{
		AuthHandle: tpm2.AuthHandle{Handle: hh, Auth: sess},
		NewAuth:    tpm2.TPM2BAuth{Buffer: auth},
	}.Execute(t.tr)
	if err != nil {
		return fmt.Errorf("proving the %s auth: %w", h, classify(err))
	}
	return nil
}

// encryptIn returns a one-shot HMAC session salted to saltKey (whose public
// area the caller trusts) that encrypts a command's first parameter with
// AES-128-CFB: how a secret travels to the TPM without crossing the bus in
// clear.
func encryptIn(saltKey Key) (tpm2.Session, error) {
	pubArea, err := saltPublic(saltKey)
	if err != nil {
		return nil, err
	}
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16,
		tpm2.Salted(saltKey.Handle, *pubArea),
		tpm2.AESEncryption(128, tpm2.EncryptIn)), nil
}
