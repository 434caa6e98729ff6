package station

import (
	"context"
	"errors"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// Causes of a failed attempt, as the audit log records them (the "cause"
// of a provision.failed record) and station report groups them. The first
// match wins; a failure matching none is CauseFlashTarget at the flash step,
// else CauseOther.
var causes = []struct {
	err   error
	cause string
}{
	{context.Canceled, "interrupted"}, // first: a killed flash tool is an interrupt, not the tool's fault
	{tpmops.ErrBadAddress, "bad-tpm-address"},
	{tpmops.ErrUnreachable, "tpm-unreachable"},
	{tpmops.ErrTPMBusy, "tpm-busy"},
	{tpmops.ErrLockout, "da-lockout"},
	{tpmops.ErrUntrustedEKCert, "untrusted-ek-cert"},
	{tpmops.ErrNoEKCert, "no-ek-cert"},
	{tpmops.ErrEKMismatch, "ek-mismatch"},
	{tpmops.ErrForeignKey, "foreign-key"},
	{ErrOwnedElsewhere, "owned-elsewhere"},
	{ErrDuplicateEK, "duplicate-ek"},
	{ErrSerialOtherTPM, "serial-other-tpm"},
	{ErrRevoked, "revoked"},
	{ErrIssuerRevoked, "issuer-revoked"},
	{ErrDuplicateRegID, "duplicate-registration-id"},
	{flash.ErrFirmwareMismatch, "firmware-mismatch"},
	{flash.ErrOtherUnit, "flash-other-unit"},
	{flash.ErrReadback, "flash-readback"},
	{flash.ErrTool, "flash-tool"},
	{certgen.ErrPolicy, "certificate-policy"},
	{certgen.ErrIssuer, "issuer"},
	{certgen.ErrHSM, "issuer"},
	{certgen.ErrPassword, "issuer"},
	{store.ErrBusy, "database"},
	{store.ErrReplaced, "database"},
	{store.ErrDamaged, "database"},
}

// Causes that no sentinel names.
const (
	CauseConfig       = "config"
	CauseFlashTarget  = "flash-target"
	CauseOther        = "other"
	CauseUnclassified = "unclassified" // a record written before causes were recorded
)

// CauseOf names the cause of a failed step, for the audit log and reports.
func CauseOf(step string, err error) string {
	for _, c := range causes {
		if errors.Is(err, c.err) {
			return c.cause
		}
	}
	var ce *configs.Error
	if errors.As(err, &ce) {
		return CauseConfig
	}
	if step == StepFlash {
		return CauseFlashTarget
	}
	return CauseOther
}
