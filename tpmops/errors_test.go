package tpmops

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/internal/swtpmtest"
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
		if hint.Of(err) == "" {
			t.Errorf("classify(%#x): no hint", uint32(tc.rc))
		}
	}
	if err := classify(tpm2.TPMRCHandle); errors.Is(err, ErrBadAuth) || errors.Is(err, ErrLockout) {
		t.Errorf("TPM_RC_HANDLE classified as %v", err)
	}
}

// TestObjectMemoryIsBusy fills the TPM's transient object slots, as a
// killed client leaves them on a TPM without a resource manager: the next
// load fails with ErrTPMBusy (retryable), and FlushStale frees the slots.
func TestObjectMemoryIsBusy(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		tmpl := tpm2.ECCSRKTemplate
		var err error
		for i := 0; i < 64 && err == nil; i++ {
			_, err = tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tmpl)}.Execute(e.tpm.Transport())
		}
		if !errors.Is(err, ErrTPMBusy) || !errors.Is(err, tpm2.TPMRCObjectMemory) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("filling the object slots: %v, want ErrTPMBusy (TPM_RC_OBJECT_MEMORY)", err)
		}
		n, err := e.tpm.FlushStale()
		if err != nil || n == 0 {
			t.Fatalf("FlushStale = %d, %v", n, err)
		}
		k, err := e.tpm.standardEK(RSA2048)
		if err != nil {
			t.Fatalf("after flushing: %v", err)
		}
		e.tpm.flush(k.Handle)
	})
}
