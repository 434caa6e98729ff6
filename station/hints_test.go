package station

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// TestStepErrorHints pins which hint a provision failure carries: the
// database's own, provision's override of a TPM condition, the cause's own
// (a refusal, a certgen error), else provision's default for the step.
func TestStepErrorHints(t *testing.T) {
	certgenErr := hint.Wrap(fmt.Errorf("%w: path length", certgen.ErrPolicy), "pass --path-len 0 or less")
	for _, tc := range []struct {
		name string
		step string
		err  error
		want string // the hint, or a part of it
	}{
		{"database", StepEK, &store.Error{Path: "st.db", Err: store.ErrBusy}, hint.Of(store.ErrBusy)},
		{"tpm unreachable: provision's override", StepSRK, fmt.Errorf("reading: %w", tpmops.ErrUnreachable), "re-run provision for this unit: it resumes where it stopped"},
		{"lockout: provision's override", StepOwnership, fmt.Errorf("%w: %w", tpmops.ErrLockout, errors.New("rc")), "do not retry"},
		{"refusal: its own", StepEK, fmt.Errorf("%w (unit SN-2)", ErrDuplicateEK), hint.Of(ErrDuplicateEK)},
		{"refusal over the bad auth beneath it", StepOwnership, fmt.Errorf("%w: %w", ErrOwnedElsewhere, tpmops.ErrBadAuth), hint.Of(ErrOwnedElsewhere)},
		{"certgen: its own", StepCertificate, fmt.Errorf("issuing: %w", certgenErr), "pass --path-len 0 or less"},
		{"configuration without a hint", StepCertificate, &configs.Error{Key: "pki.issuer_cert", Err: errors.New("unreadable")}, "fix the configuration (pki.issuer_cert) and re-run provision for this unit"},
		{"flash default", StepFlash, errors.New("write failed"), "it resumes at the flash step"},
		{"step default", StepDeviceKey, errors.New("whatever"), "it resumes at step " + StepDeviceKey},
		{"interrupted between steps", StepSRK, context.Canceled, "interrupted: re-run `station provision --serial SN-1` to resume"},
		// The flash tool killed by the interrupt is no fault of the target.
		{"interrupted flash tool", StepFlash, fmt.Errorf("exec:fake: write: %w: %w", flash.ErrTool, context.Canceled), "interrupted: re-run `station provision --serial SN-1` to resume"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := &StepError{Serial: "SN-1", Step: tc.step, Err: tc.err}
			got := hint.Of(se)
			if tc.want == "" || !strings.Contains(got, tc.want) {
				t.Errorf("hint %q, want %q", got, tc.want)
			}
			if tc.step == StepFlash && errors.Is(tc.err, context.Canceled) {
				if c := CauseOf(tc.step, tc.err); c != "interrupted" {
					t.Errorf("cause %q, want interrupted", c)
				}
			}
			// The hint changes neither the text nor what the error is.
			if se.Error() != "unit SN-1: step "+tc.step+": "+tc.err.Error() || !errors.Is(se, tc.err) {
				t.Errorf("StepError = %q, Is(cause) = %v", se.Error(), errors.Is(se, tc.err))
			}
		})
	}
}
