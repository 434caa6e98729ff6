// Package store is the station database: one bbolt file holding the units,
// their per-step journal, revocations and export bookkeeping. Other packages
// (audit, enroll) keep their own buckets in the same file and write them in
// the same transactions, so a unit's state and its audit records commit
// together or not at all.
//
// Only Create makes a database (under a temporary name, linked into place
// when whole); Open refuses, without writing to it, any file that is not an
// initialized database of the given station (ErrNotStationDB) or cannot be
// read whole (ErrDamaged). DB's View and Update turn bbolt's panics on
// corrupt pages into ErrDamaged, and Update writes only while the path still
// names the open file (ErrReplaced). Backup copies a database consistently
// while another process writes it. See docs/DATABASE.md.
//
// store knows nothing of TPMs or cobra; it imports bbolt, and enroll/regid
// for how DPS compares registration IDs (its index).
package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/enroll/regid"
	"github.com/factory-id/station/internal/hint"
)

// ErrNotFound means no unit has that serial.
var ErrNotFound = hint.New("no such unit",
	"check the serial: `station units list` shows the units this station knows")

var (
	bucketUnits = []byte("units")       // serial -> Unit JSON
	bucketEKs   = []byte("eks")         // EK SHA-256 hex -> serial
	bucketCerts = []byte("certs")       // certificate serial (hex) -> unit serial
	bucketMeta  = []byte("meta")        // station-wide values
	bucketCAs   = []byte("revoked-cas") // issuer SHA-256 hex -> Revocation JSON
	// Created on first use, so databases made before them need no migration.
	bucketRegIDs = []byte("regids")        // regid.Key(registration ID) -> serial
	bucketSeals  = []byte("pending-seals") // serial NUL hierarchy -> TPM-sealed pending auth
)

// Unit states.
const (
	StatusInProgress  = "in-progress"
	StatusProvisioned = "provisioned"
	StatusRevoked     = "revoked"
)

// Step states in the journal.
const (
	StepStarted = "started"
	StepDone    = "done"
	StepFailed  = "failed"
)

// Step is one journal entry of the manufacturing timeline.
type Step struct {
	Name       string    `json:"name"`
	State      string    `json:"state"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Millis     float64   `json:"ms,omitempty"`
	Error      string    `json:"error,omitempty"`
	Attempts   int       `json:"attempts"`
}

// Escrow is one hierarchy authorization, encrypted to the escrow public key
// (a compact JWE). Pending is true while it is stored but not yet known to be
// applied to the TPM.
type Escrow struct {
	Hierarchy string    `json:"hierarchy"` // "lockout" | "owner"
	JWE       string    `json:"jwe"`
	Pending   bool      `json:"pending"`
	CreatedAt time.Time `json:"created_at"`
}

// Revocation marks a unit or an intermediate compromised.
type Revocation struct {
	At       time.Time `json:"at"`
	Reason   string    `json:"reason"`
	Operator string    `json:"operator,omitempty"`
	// Issuer is set when the unit is revoked because its issuing CA was.
	Issuer string `json:"issuer,omitempty"`
}

// Unit is everything the station knows of one unit. It holds no secret: the
// escrows are encrypted and the symmetric key is never stored.
type Unit struct {
	Serial      string    `json:"serial"`
	StationID   string    `json:"station_id"`
	Operator    string    `json:"operator,omitempty"`
	Status      string    `json:"status"`
	TPMAddress  string    `json:"tpm_address,omitempty"`
	FlashTarget string    `json:"flash_target,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// ProvisionedAt is when the last step finished.
	ProvisionedAt time.Time `json:"provisioned_at,omitzero"`

	Attestation    string `json:"attestation"` // tpm | x509 | symmetric-key
	RegistrationID string `json:"registration_id,omitempty"`
	DeviceID       string `json:"device_id,omitempty"`

	EKType   string `json:"ek_type,omitempty"`   // rsa2048 | ecc-p256
	EKPublic []byte `json:"ek_public,omitempty"` // TPM2B_PUBLIC, as DPS registers it
	EKSHA256 string `json:"ek_sha256,omitempty"` // hex SHA-256 of EKPublic
	EKCert   []byte `json:"ek_cert,omitempty"`   // DER

	SRKHandle uint32 `json:"srk_handle,omitempty"`
	SRKPublic []byte `json:"srk_public,omitempty"` // TPM2B_PUBLIC
	SRKName   []byte `json:"srk_name,omitempty"`

	DeviceKeyHandle uint32 `json:"device_key_handle,omitempty"`
	DeviceKeyPublic []byte `json:"device_key_public,omitempty"` // TPM2B_PUBLIC
	// DeviceKeyPending is the public of a key created but not yet known to be
	// persisted: on resume, a key at the handle equal to it is ours.
	DeviceKeyPending []byte `json:"device_key_pending,omitempty"`
	// DeviceKeyPrivate is the TPM2B_PRIVATE that TPM2_Create returned for the
	// device key: its sensitive area encrypted by the SRK, usable only by
	// loading it under that SRK on that TPM (not a secret in clear). It is
	// journaled with DeviceKeyPending, before the key is persisted, so a
	// resumed unit still gets its TSS2 key file in the bundle.
	DeviceKeyPrivate []byte `json:"device_key_private,omitempty"`

	OwnerAuthPolicy string   `json:"owner_auth_policy,omitempty"` // empty | escrow
	Escrows         []Escrow `json:"escrows,omitempty"`

	Cert       []byte    `json:"cert,omitempty"`  // leaf DER
	Chain      [][]byte  `json:"chain,omitempty"` // issuer first, up to (not including) the root
	CertSerial string    `json:"cert_serial,omitempty"`
	CertSHA256 string    `json:"cert_sha256,omitempty"`
	NotAfter   time.Time `json:"not_after,omitzero"`

	FirmwareSHA256 string            `json:"firmware_sha256,omitempty"`
	BundleSHA256   string            `json:"bundle_sha256,omitempty"`
	Flash          map[string]string `json:"flash,omitempty"` // target -> detail (digest, index...)

	Steps      []Step      `json:"steps,omitempty"`
	Revocation *Revocation `json:"revocation,omitempty"`
}

// Step returns the journal entry named name, or nil.
func (u *Unit) Step(name string) *Step {
	for i := range u.Steps {
		if u.Steps[i].Name == name {
			return &u.Steps[i]
		}
	}
	return nil
}

// StepDone reports whether the step named name has finished.
func (u *Unit) StepDone(name string) bool {
	s := u.Step(name)
	return s != nil && s.State == StepDone
}

// GetUnit reads a unit by serial (ErrNotFound if absent).
func GetUnit(tx *bolt.Tx, serial string) (*Unit, error) {
	v := tx.Bucket(bucketUnits).Get([]byte(serial))
	if v == nil {
		return nil, fmt.Errorf("unit %s: %w", serial, ErrNotFound)
	}
	var u Unit
	if err := json.Unmarshal(v, &u); err != nil {
		return nil, undecodable(serial, err)
	}
	return &u, nil
}

// PutUnit writes a unit and keeps the EK and certificate indexes current.
func PutUnit(tx *bolt.Tx, u *Unit) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketUnits).Put([]byte(u.Serial), b); err != nil {
		return err
	}
	if u.EKSHA256 != "" {
		if err := tx.Bucket(bucketEKs).Put([]byte(u.EKSHA256), []byte(u.Serial)); err != nil {
			return err
		}
	}
	if u.CertSerial != "" {
		if err := tx.Bucket(bucketCerts).Put([]byte(u.CertSerial), []byte(u.Serial)); err != nil {
			return err
		}
	}
	if u.RegistrationID != "" {
		b, err := regIDIndex(tx)
		if err != nil {
			return err
		}
		// The first unit keeps the ID: callers refuse a second one
		// (SerialByRegistrationID) before they write it.
		if b.Get(regIDKey(u.RegistrationID)) == nil {
			if err := b.Put(regIDKey(u.RegistrationID), []byte(u.Serial)); err != nil {
				return err
			}
		}
	}
	return nil
}

// regIDKey is how the index spells a registration ID: as DPS compares them
// (regid.Key).
func regIDKey(id string) []byte { return []byte(regid.Key(id)) }

// regIDIndex returns the registration ID index, building it from the units
// the first time (a database written before the index existed).
func regIDIndex(tx *bolt.Tx) (*bolt.Bucket, error) {
	if b := tx.Bucket(bucketRegIDs); b != nil {
		return b, nil
	}
	b, err := tx.CreateBucket(bucketRegIDs)
	if err != nil {
		return nil, err
	}
	err = ForEachUnit(tx, func(u *Unit) error {
		if u.RegistrationID == "" || b.Get(regIDKey(u.RegistrationID)) != nil {
			return nil // the first unit in serial order keeps a duplicate made before the index
		}
		return b.Put(regIDKey(u.RegistrationID), []byte(u.Serial))
	})
	return b, err
}

// SerialByRegistrationID returns the serial recorded with a registration ID,
// compared as DPS compares them (case-insensitively), or "".
func SerialByRegistrationID(tx *bolt.Tx, id string) string {
	if b := tx.Bucket(bucketRegIDs); b != nil {
		return string(b.Get(regIDKey(id)))
	}
	// Not indexed yet (read-only transaction on an older database): scan.
	var serial string
	ForEachUnit(tx, func(u *Unit) error {
		if serial == "" && regid.Key(u.RegistrationID) == regid.Key(id) {
			serial = u.Serial
		}
		return nil
	})
	return serial
}

func sealKey(serial, hierarchy string) []byte { return []byte(serial + "\x00" + hierarchy) }

// PutPendingSeal keeps, while a unit's escrow for hierarchy is pending, the
// same auth value sealed to the unit's own TPM (only that TPM can unseal
// it): what lets a resumed run prove the TPM holds the escrowed value. It
// lives outside the unit record, so no listing or export carries it.
func PutPendingSeal(tx *bolt.Tx, serial, hierarchy string, sealed []byte) error {
	b, err := tx.CreateBucketIfNotExists(bucketSeals)
	if err != nil {
		return err
	}
	return b.Put(sealKey(serial, hierarchy), sealed)
}

// PendingSeal returns the sealed pending auth of serial's hierarchy, or nil.
func PendingSeal(tx *bolt.Tx, serial, hierarchy string) []byte {
	b := tx.Bucket(bucketSeals)
	if b == nil {
		return nil
	}
	if v := b.Get(sealKey(serial, hierarchy)); v != nil {
		return append([]byte(nil), v...)
	}
	return nil
}

// DeletePendingSeal forgets a sealed pending auth (absent is not an error).
func DeletePendingSeal(tx *bolt.Tx, serial, hierarchy string) error {
	b := tx.Bucket(bucketSeals)
	if b == nil {
		return nil
	}
	return b.Delete(sealKey(serial, hierarchy))
}

// undecodable is a unit record that is not the JSON station wrote: the file
// was damaged or edited.
func undecodable(serial string, err error) error {
	return &Error{Err: ErrDamaged, Detail: fmt.Sprintf("the record of unit %s does not decode: %v", serial, err)}
}

// Unit reads one unit in its own transaction (ErrNotFound if absent).
func (db *DB) Unit(serial string) (u *Unit, err error) {
	err = db.View(func(tx *bolt.Tx) error {
		u, err = GetUnit(tx, serial)
		return err
	})
	return u, err
}

// Units returns, in serial order, the units for which keep returns true
// (every unit when keep is nil).
func (db *DB) Units(keep func(*Unit) bool) ([]*Unit, error) {
	var out []*Unit
	err := db.View(func(tx *bolt.Tx) error {
		return ForEachUnit(tx, func(u *Unit) error {
			if keep == nil || keep(u) {
				out = append(out, u)
			}
			return nil
		})
	})
	return out, err
}

// SerialByEK returns the serial recorded with an EK (hex SHA-256 of its
// TPM2B_PUBLIC), or "".
func SerialByEK(tx *bolt.Tx, ekSHA256 string) string {
	return string(tx.Bucket(bucketEKs).Get([]byte(ekSHA256)))
}

// SerialByCert returns the unit holding the certificate serial (hex), or "".
func SerialByCert(tx *bolt.Tx, certSerial string) string {
	return string(tx.Bucket(bucketCerts).Get([]byte(certSerial)))
}

// ForEachUnit calls fn for every unit in serial order; a non-nil error from
// fn stops the walk and is returned.
func ForEachUnit(tx *bolt.Tx, fn func(*Unit) error) error {
	return tx.Bucket(bucketUnits).ForEach(func(k, v []byte) error {
		var u Unit
		if err := json.Unmarshal(v, &u); err != nil {
			return undecodable(string(k), err)
		}
		return fn(&u)
	})
}

// GetMeta and PutMeta keep small station-wide values (counters, export state).
func GetMeta(tx *bolt.Tx, key string) []byte {
	v := tx.Bucket(bucketMeta).Get([]byte(key))
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// PutMeta stores a station-wide value.
func PutMeta(tx *bolt.Tx, key string, val []byte) error {
	return tx.Bucket(bucketMeta).Put([]byte(key), val)
}

// RevokeCA records an intermediate (by the hex SHA-256 of its DER) as revoked.
func RevokeCA(tx *bolt.Tx, certSHA256 string, r Revocation) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketCAs).Put([]byte(certSHA256), b)
}

// RevokedCAs returns the revoked intermediates by certificate SHA-256.
func RevokedCAs(tx *bolt.Tx) (map[string]Revocation, error) {
	out := map[string]Revocation{}
	err := tx.Bucket(bucketCAs).ForEach(func(k, v []byte) error {
		var r Revocation
		if err := json.Unmarshal(v, &r); err != nil {
			return &Error{Err: ErrDamaged, Detail: fmt.Sprintf("the revocation of issuer %s does not decode: %v", k, err)}
		}
		out[string(k)] = r
		return nil
	})
	return out, err
}
