// Package softhsmtest makes throwaway SoftHSM2 tokens for tests: a private
// token folder and configuration under a temporary directory, a token
// initialized with softhsm2-util, and kms URIs naming keys in it.
//
// SoftHSM2 reads SOFTHSM2_CONF when the module is initialized, so New sets it
// for the test (t.Setenv: such tests cannot run in parallel) and every
// PKCS#11 context must be closed before the next test makes its token.
package softhsmtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Module is the SoftHSM2 PKCS#11 module of the Debian/Ubuntu package.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// Token is an initialized SoftHSM2 token.
type Token struct {
	Label string
	PIN   string
	SOPIN string
	// Conf is the softhsm2.conf to put in SOFTHSM2_CONF.
	Conf string
	Dir  string
}

// ErrMissing means softhsm2 is not installed.
var ErrMissing = errors.New("softhsm2 is not installed (apt-get install softhsm2)")

// Available reports whether softhsm2-util and the module are installed.
func Available() error {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return ErrMissing
	}
	if _, err := os.Stat(Module); err != nil {
		return ErrMissing
	}
	return nil
}

// Create initializes a token named label under dir (which it creates). It
// does not touch the process environment: the caller points SOFTHSM2_CONF
// at tk.Conf.
func Create(dir, label, pin, soPIN string) (*Token, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	return &Token{Label: label, PIN: pin, SOPIN: soPIN, Conf: conf, Dir: dir}, nil
}

// New makes a token in t.TempDir() and sets SOFTHSM2_CONF for the test. It
// skips the test when softhsm2 is missing, unless CI=true, where it fails.
func New(t testing.TB, label string) *Token {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	tk, err := Create(t.TempDir(), label, "user-pin-4821", "so-pin-9137")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tk.Conf)
	return tk
}

// URI is the kms URI of key (id in hex, object label) in the token, with the
// PIN given as pin-value (tests only: production URIs use pin-source).
func (tk *Token) URI(idHex, object string) string {
	var id strings.Builder
	for i := 0; i+1 < len(idHex); i += 2 {
		id.WriteString("%" + idHex[i:i+2])
	}
	return fmt.Sprintf("pkcs11:module-path=%s;token=%s;id=%s;object=%s?pin-value=%s", Module, tk.Label, id.String(), object, tk.PIN)
}
