package station

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/enroll"
)

// ErrRevokeTarget means neither or both of a serial and a CA were named.
var ErrRevokeTarget = errors.New("revoke needs exactly one of a serial or a CA certificate")

// RevokeOptions are the flags of `station revoke`.
type RevokeOptions struct {
	Serial   string
	CA       *x509.Certificate // a compromised intermediate
	Reason   string
	Operator string
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// RevokeResult says what was revoked.
type RevokeResult struct {
	Serial string `json:"serial,omitempty"`
	// Already is true when the unit was revoked before (its first
	// revocation is kept).
	Already bool       `json:"already_revoked,omitempty"`
	CA      *RevokedCA `json:"ca,omitempty"`
}

// RevokedCA says what revoking an intermediate did: the units under it,
// those newly revoked, and whether it was revoked before.
type RevokedCA struct {
	Subject string   `json:"subject"`
	SHA256  string   `json:"sha256"`
	GroupID string   `json:"group_id"`
	Units   []string `json:"units"`
	Newly   []string `json:"newly_revoked"`
	Already bool     `json:"already_revoked,omitempty"`
}

// Revoke marks a unit, or an intermediate and every unit under it, revoked,
// with the audit records in the same transaction: one "revoke" record per
// unit revoked (its serial set), and for a CA one station-wide "revoke"
// record naming the CA and listing every unit under it.
// Later exports disable their enrollments.
func Revoke(env *Env, o RevokeOptions) (*RevokeResult, error) {
	if (o.Serial == "") == (o.CA == nil) {
		return nil, ErrRevokeTarget
	}
	if o.Reason == "" {
		return nil, fmt.Errorf("%w: a reason is required", ErrRevokeTarget)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	r := enroll.NewRevocation(o.Reason, o.Operator, now())
	out := &RevokeResult{Serial: o.Serial}
	err := env.DB.Update(func(tx *bolt.Tx) error {
		if o.Serial != "" {
			u, changed, err := enroll.RevokeUnit(tx, o.Serial, r)
			if err != nil {
				return err
			}
			out.Already = !changed
			if !changed {
				return nil
			}
			_, err = env.Log.Append(tx, audit.Event{Serial: u.Serial, Type: audit.EventRevoke, Operator: o.Operator,
				Payload: map[string]any{"reason": o.Reason, "registration_id": u.RegistrationID}})
			return err
		}
		rev, err := enroll.RevokeCA(tx, o.CA, r)
		if err != nil {
			return err
		}
		out.CA = &RevokedCA{o.CA.Subject.String(), rev.SHA256, rev.GroupID, nonNil(rev.Units), nonNil(rev.Newly), rev.Already}
		_, err = env.Log.Append(tx, audit.Event{Type: audit.EventRevoke, Operator: o.Operator, Payload: map[string]any{
			"reason": o.Reason, "ca_sha256": rev.SHA256, "subject": o.CA.Subject.String(),
			"group_id": rev.GroupID, "units": nonNil(rev.Units), "already_revoked": rev.Already,
		}})
		if err != nil {
			return err
		}
		for _, s := range rev.Newly {
			if _, err := env.Log.Append(tx, audit.Event{Serial: s, Type: audit.EventRevoke, Operator: o.Operator,
				Payload: map[string]any{"reason": rev.Revocation.Reason, "issuer_sha256": rev.SHA256}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
