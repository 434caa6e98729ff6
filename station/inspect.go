package station

import (
	"bytes"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// What station makes of a persistent handle (HandleVerdict.Role).
const (
	RoleEK        = "ek"
	RoleSRK       = "srk"
	RoleDeviceKey = "device-key"
	// RoleDPSKey is the key DPS sends, at the handle where the DPS SDKs
	// persist it (0x81000100): the device's own, or a leftover of a
	// station verify that was interrupted; nothing tells them apart.
	RoleDPSKey = "dps-key"
	// RoleDPSTestKey is a DPS key after 0x81000100: only station verify
	// persists there (when 0x81000100 is taken), so it is its leftover.
	RoleDPSTestKey = "dps-test-key"
	RoleUnknown    = "unknown"
)

// HandleVerdict is what station makes of one persistent object.
type HandleVerdict struct {
	Handle tpmops.Handle
	Alg    string
	Role   string
	// Station is set when the object is one station uses as it is (the
	// standard EK, an SRK of the standard template, its device key) or
	// left behind (a DPS test key); never for RoleUnknown.
	Station bool
	Detail  string
}

var ekTemplateNames = map[tpmops.Template]string{
	tpmops.TemplateEKRSA2048: "RSA-2048 EK (TCG template L-1)",
	tpmops.TemplateEKECCP256: "ECC P-256 EK (TCG template L-2)",
	tpmops.TemplateEKECCP384: "ECC P-384 EK (TCG template H-3)",
}

var srkTemplates = map[tpmops.Handle]struct {
	tmpl tpmops.Template
	name string
}{
	tpmops.SRKHandleRSA: {tpmops.TemplateSRKRSA2048, "RSA-2048"},
	tpmops.SRKHandleECC: {tpmops.TemplateSRKECCP256, "ECC P-256"},
}

// standardEKHandle is where station persists the EK of template tmpl.
func standardEKHandle(tmpl tpmops.Template) tpmops.Handle {
	_, h, err := tpmops.EKTemplate(tpmops.Alg(strings.TrimPrefix(string(tmpl), "ek-")))
	if err != nil {
		return 0
	}
	return h
}

// Recognize says what station makes of each persistent object of an
// inspected TPM, from public areas alone: the standard EK at its handle
// (and which EK certificate in NV certifies it), an SRK of the standard
// template at 0x81000001/0x81000002, the device key at deviceKeyHandle
// (tpm.device_key_handle), DPS keys at 0x81000100-0x810001ff, anything
// else "unknown: not station's". u is the unit the station database
// records for this TPM (nil when none, or no database): its EK, SRK and
// device key are then compared with what the TPM holds.
func Recognize(in *tpmops.Inspection, deviceKeyHandle tpmops.Handle, u *store.Unit) []HandleVerdict {
	if u != nil && u.DeviceKeyHandle != 0 {
		deviceKeyHandle = tpmops.Handle(u.DeviceKeyHandle)
	}
	out := make([]HandleVerdict, 0, len(in.Persistent))
	for _, o := range in.Persistent {
		v := HandleVerdict{Handle: o.Handle, Alg: o.Alg, Role: RoleUnknown}
		h := o.Handle
		switch {
		case h >= 0x81010000 && h <= 0x810100ff:
			recognizeEK(in, o, u, &v)
		case srkTemplates[h].tmpl != "":
			recognizeSRK(o, u, &v)
		case h == deviceKeyHandle:
			recognizeDeviceKey(o, u, &v)
		case h >= tpmops.DPSKeyHandle && h <= tpmops.DPSKeyHandle+0xff && o.Template == tpmops.TemplateDPSKey:
			if h == tpmops.DPSKeyHandle {
				v.Role = RoleDPSKey
				v.Detail = "the key DPS sends, where the DPS SDKs persist it: the device's own DPS registration, or a leftover of an interrupted station verify"
			} else {
				v.Role, v.Station = RoleDPSTestKey, true
				v.Detail = "leftover DPS test key of an interrupted station verify (verify persists here when 0x81000100 is taken); it holds nothing of the unit's identity"
			}
		}
		if v.Role == RoleUnknown {
			v.Station = false
			if v.Detail == "" {
				v.Detail = "unknown: not station's"
			}
			v.Detail += "; station leaves it untouched"
		}
		out = append(out, v)
	}
	return out
}

func recognizeEK(in *tpmops.Inspection, o tpmops.Object, u *store.Unit, v *HandleVerdict) {
	name, isEK := ekTemplateNames[o.Template]
	if !isEK || standardEKHandle(o.Template) != o.Handle {
		v.Detail = "unknown: not station's (in the EK range, but not a standard-template EK at its standard handle; provision refuses it)"
		return
	}
	v.Role, v.Station = RoleEK, true
	parts := []string{"standard " + name}
	if c := in.CertifyingIndex(o.Pub); c != nil {
		parts = append(parts, fmt.Sprintf("certified by NV 0x%08x", c.Slot.Index))
	} else {
		parts = append(parts, "no EK certificate in NV certifies it")
	}
	if u != nil {
		if bytes.Equal(o.Public, u.EKPublic) {
			parts = append(parts, "the EK recorded for unit "+u.Serial)
		} else if u.EKType == o.Alg {
			parts = append(parts, "not the EK recorded for unit "+u.Serial)
		}
	}
	v.Detail = strings.Join(parts, "; ")
}

func recognizeSRK(o tpmops.Object, u *store.Unit, v *HandleVerdict) {
	want := srkTemplates[o.Handle]
	if o.Template != want.tmpl {
		v.Detail = "unknown: not station's (not the standard SRK template; provision refuses it)"
		return
	}
	v.Role, v.Station = RoleSRK, true
	v.Detail = "standard " + want.name + " SRK template"
	if u != nil && u.SRKHandle == uint32(o.Handle) {
		if bytes.Equal(o.Name, u.SRKName) {
			v.Detail += "; the SRK recorded for unit " + u.Serial
		} else {
			v.Station = false
			v.Detail += "; not the SRK recorded for unit " + u.Serial
		}
	}
}

func recognizeDeviceKey(o tpmops.Object, u *store.Unit, v *HandleVerdict) {
	switch {
	case u != nil && len(u.DeviceKeyPublic) > 0 && bytes.Equal(o.Public, u.DeviceKeyPublic):
		v.Role, v.Station = RoleDeviceKey, true
		v.Detail = "station's device key of unit " + u.Serial
	case u != nil && len(u.DeviceKeyPending) > 0 && bytes.Equal(o.Public, u.DeviceKeyPending):
		v.Role, v.Station = RoleDeviceKey, true
		v.Detail = "station's device key of unit " + u.Serial + ", persisted by a provision that has not finished"
	case o.Template == tpmops.TemplateDeviceKey && u != nil:
		v.Detail = "unknown: not station's (the device key template, but not the key recorded for unit " + u.Serial + ")"
	case o.Template == tpmops.TemplateDeviceKey:
		v.Role, v.Station = RoleDeviceKey, true
		v.Detail = "station's device key template (ECC P-256, fixedTPM, sign-only); no station database record confirms which unit's"
	default:
		v.Detail = "unknown: not station's (at tpm.device_key_handle, but not station's device key template; provision refuses it)"
	}
}

// Database statuses of an inspected TPM (Recognition.Status).
const (
	TPMProvisioned    = store.StatusProvisioned
	TPMInProgress     = store.StatusInProgress
	TPMRevoked        = store.StatusRevoked
	TPMFresh          = "fresh"
	TPMOwnedElsewhere = "owned-elsewhere"
)

// Recognition is whether this station's database knows an inspected TPM.
type Recognition struct {
	Status string
	Serial string
	Detail string
}

// FindUnit returns the unit the station database records for an inspected
// TPM, or nil: by the hash of a standard EK persisted on it, else (an EK
// not persisted) by an EK certificate in its NV equal to a unit's.
func FindUnit(db *store.DB, in *tpmops.Inspection) (*store.Unit, error) {
	var u *store.Unit
	err := db.View(func(tx *bolt.Tx) error {
		for _, o := range in.Persistent {
			if _, ok := ekTemplateNames[o.Template]; !ok {
				continue
			}
			if s := store.SerialByEK(tx, sha256hex(o.Public)); s != "" {
				var err error
				u, err = store.GetUnit(tx, s)
				return err
			}
		}
		var ders [][]byte
		for _, c := range in.EKCerts {
			if c.Cert != nil {
				ders = append(ders, c.Cert.DER)
			}
		}
		if len(ders) == 0 {
			return nil
		}
		return store.ForEachUnit(tx, func(x *store.Unit) error {
			for _, d := range ders {
				if u == nil && len(x.EKCert) > 0 && bytes.Equal(x.EKCert, d) {
					u = x
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("looking the TPM up in the station database: %w", err)
	}
	return u, nil
}

// RecognizeTPM says whether the station database knows an inspected TPM: the
// unit it was provisioned as (u, from FindUnit), else fresh (no hierarchy
// auth set: provision would take it) or owned by someone else (an auth
// this station never set: provision refuses it).
func RecognizeTPM(in *tpmops.Inspection, u *store.Unit) Recognition {
	if u != nil {
		r := Recognition{Status: u.Status, Serial: u.Serial}
		switch u.Status {
		case store.StatusProvisioned:
			r.Detail = "provisioned as " + u.Serial
		case store.StatusInProgress:
			r.Detail = fmt.Sprintf("known as %s, provisioning not finished: `station provision --serial %s` resumes it", u.Serial, u.Serial)
		case store.StatusRevoked:
			r.Detail = "provisioned as " + u.Serial + ", revoked"
		default:
			r.Detail = "recorded as " + u.Serial + " (" + u.Status + ")"
		}
		return r
	}
	var set []string
	p := in.Permanent
	for _, a := range []struct {
		on   bool
		name string
	}{{p.OwnerAuthSet, "owner"}, {p.EndorsementAuthSet, "endorsement"}, {p.LockoutAuthSet, "lockout"}} {
		if a.on {
			set = append(set, a.name)
		}
	}
	if len(set) > 0 {
		return Recognition{Status: TPMOwnedElsewhere,
			Detail: "not in this station's database, and its " + strings.Join(set, " and ") + " auth is set: someone else owns it; provision refuses it"}
	}
	return Recognition{Status: TPMFresh, Detail: "not in this station's database and no hierarchy auth set: provision would take it"}
}
