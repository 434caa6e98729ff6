package tpmops

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		rc   tpm2.TPMRC
		want error
	}{
		{tpm2.TPMRCLockout, ErrLockout},
		{tpm2.TPMRCBadAuth, ErrBadAuth},
		{tpm2.TPMRCAuthFail, ErrBadAuth},
		{tpm2.TPMRCBadAuth + 0x100, ErrBadAuth}, // session 1 qualifier
	} {
		err := fmt.Errorf("doing something: %w", classify(tc.rc))
		if !errors.Is(err, tc.want) || !errors.Is(err, tc.rc) {
			t.Errorf("classify(%#x) = %v, want %v and the TPM code", uint32(tc.rc), err, tc.want)
		}
		var h interface{ Hint() string }
		if !errors.As(err, &h) || h.Hint() == "" {
			t.Errorf("classify(%#x): no hint", uint32(tc.rc))
		}
	}
	if err := classify(tpm2.TPMRCHandle); errors.Is(err, ErrBadAuth) || errors.Is(err, ErrLockout) {
		t.Errorf("TPM_RC_HANDLE classified as %v", err)
	}
}
