package tpmops

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Secrets is one salted, parameter-encrypting HMAC session kept open for
// every secret a unit sends to its TPM (the pending lockout value sealed
// under the SRK, then the same value set by HierarchyChangeAuth, and a
// symmetric-key bundle's sealed key). Starting a session salted to an RSA key
// costs the TPM an RSA decryption (TPM2_StartAuthSession), on a discrete
// chip 90 to 500 ms (internal/tpmlatency): a unit pays it once instead of
// once per secret. Each command's first parameter is encrypted with
// AES-128-CFB under a key only this TPM and this process know, as with the
// one-shot sessions of TPM.Seal and TPM.ChangeAuth.
//
// The session is flushed by Close; a process killed before that leaves one
// loaded session, which the next run's leftover sweep flushes on TPMs
// without a resource manager (the same as a one-shot session interrupted
// between its start and its command). After a failed command the session
// is flushed and every later call fails: the caller's step fails anyway.
type Secrets struct {
	t     *TPM
	sess  tpm2.Session
	flush func() error
	err   error // why a command retired the session
}

// Secrets starts the session, salted to saltKey (a loaded or persistent
// decryption key, such as the SRK, whose public area the caller trusts).
func (t *TPM) Secrets(saltKey Key) (*Secrets, error) {
	pubArea, err := saltPublic(saltKey)
	if err != nil {
		return nil, err
	}
	sess, flush, err := tpm2.HMACSession(t.tr, tpm2.TPMAlgSHA256, 16,
		tpm2.Salted(saltKey.Handle, *pubArea),
		tpm2.AESEncryption(128, tpm2.EncryptIn))
	if err != nil {
		return nil, fmt.Errorf("starting a session salted to %#x: %w", uint32(saltKey.Handle), classify(err))
	}
	return &Secrets{t: t, sess: sess, flush: flush}, nil
}

// errSecretsClosed is what a closed or failed Secrets gives.
var errSecretsClosed = errors.New("the secrets session is closed")

// use runs one command with the session and retires the session if the
// command failed.
func (s *Secrets) use(run func(tpm2.Session) error) error {
	if s == nil || s.sess == nil {
		if s != nil && s.err != nil {
			return fmt.Errorf("%w (after: %v)", errSecretsClosed, s.err)
		}
		return errSecretsClosed
	}
	if err := run(s.sess); err != nil {
		s.Close()
		s.err = err
		return err
	}
	return nil
}

// Seal is TPM.Seal through the session; srk must be the key the session
// is salted to or another key under which the caller seals.
func (s *Secrets) Seal(srk Key, data []byte) (blob []byte, err error) {
	err = s.use(func(enc tpm2.Session) error {
		blob, err = s.t.seal(srk, data, enc)
		return err
	})
	return blob, err
}

// ChangeAuth is TPM.ChangeAuth through the session.
func (s *Secrets) ChangeAuth(h Hierarchy, oldAuth, newAuth []byte) error {
	return s.use(func(enc tpm2.Session) error { return s.t.changeAuth(h, oldAuth, newAuth, enc) })
}

// Closed tells whether the session is closed (by Close or a failed command).
func (s *Secrets) Closed() bool { return s == nil || s.sess == nil }

// Close flushes the session. It may be called more than once.
func (s *Secrets) Close() error {
	if s == nil || s.sess == nil {
		return nil
	}
	s.sess = nil
	if err := s.flush(); err != nil {
		return fmt.Errorf("flushing the secrets session: %w", classify(err))
	}
	return nil
}

// saltPublic decodes a salt key's public area.
func saltPublic(saltKey Key) (*tpm2.TPMTPublic, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](saltKey.Public)
	if err != nil {
		return nil, fmt.Errorf("salt key public: %w", err)
	}
	pubArea, err := pub.Contents()
	if err != nil {
		return nil, fmt.Errorf("salt key public: %w", err)
	}
	return pubArea, nil
}
