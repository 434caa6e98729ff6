package enroll

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/factory-id/station/enroll/regid"
	"github.com/factory-id/station/store"
)

// The DPS service schema (service.json, api-version 2021-10-01). Field names
// and casing are the service's; optional fields are omitted when empty so a
// file carries only what the station decided.

// IndividualEnrollment is one device's enrollment.
type IndividualEnrollment struct {
	RegistrationID     string              `json:"registrationId"`
	DeviceID           string              `json:"deviceId,omitempty"`
	Attestation        Attestation         `json:"attestation"`
	Capabilities       *DeviceCapabilities `json:"capabilities,omitempty"`
	IoTHubs            []string            `json:"iotHubs,omitempty"`
	AllocationPolicy   string              `json:"allocationPolicy,omitempty"`
	InitialTwin        *InitialTwin        `json:"initialTwin,omitempty"`
	ProvisioningStatus string              `json:"provisioningStatus,omitempty"`
	ReprovisionPolicy  *ReprovisionPolicy  `json:"reprovisionPolicy,omitempty"`
	ETag               string              `json:"etag,omitempty"`
}

// EnrollmentGroup is a group keyed on a signing certificate (or a
// symmetric key). DPS has no TPM groups.
type EnrollmentGroup struct {
	EnrollmentGroupID  string              `json:"enrollmentGroupId"`
	Attestation        Attestation         `json:"attestation"`
	Capabilities       *DeviceCapabilities `json:"capabilities,omitempty"`
	IoTHubs            []string            `json:"iotHubs,omitempty"`
	AllocationPolicy   string              `json:"allocationPolicy,omitempty"`
	InitialTwin        *InitialTwin        `json:"initialTwin,omitempty"`
	ProvisioningStatus string              `json:"provisioningStatus,omitempty"`
	ReprovisionPolicy  *ReprovisionPolicy  `json:"reprovisionPolicy,omitempty"`
	ETag               string              `json:"etag,omitempty"`
}

// Attestation is DPS's AttestationMechanism.
type Attestation struct {
	Type         string              `json:"type"` // tpm | x509 | symmetricKey
	TPM          *TPMAttestation     `json:"tpm,omitempty"`
	X509         *X509Attestation    `json:"x509,omitempty"`
	SymmetricKey *SymmetricKeyAttest `json:"symmetricKey,omitempty"`
}

// TPMAttestation holds the EK (and optionally the SRK) as base64 TPM2B_PUBLIC.
type TPMAttestation struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey,omitempty"`
}

// X509Attestation holds client certificates (individual) or signing
// certificates (group).
type X509Attestation struct {
	ClientCertificates  *X509Certificates `json:"clientCertificates,omitempty"`
	SigningCertificates *X509Certificates `json:"signingCertificates,omitempty"`
}

// X509Certificates is a primary (and optional secondary) certificate.
type X509Certificates struct {
	Primary   *X509Certificate `json:"primary"`
	Secondary *X509Certificate `json:"secondary,omitempty"`
}

// X509Certificate carries a PEM certificate.
type X509Certificate struct {
	Certificate string `json:"certificate"`
}

// SymmetricKeyAttest holds base64 keys. Left empty, DPS generates keys, which
// the unit would not have: see Builder.
type SymmetricKeyAttest struct {
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
}

// DeviceCapabilities is {"iotEdge": bool}.
type DeviceCapabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// InitialTwin is the twin DPS gives the device on first assignment.
type InitialTwin struct {
	Tags       map[string]string `json:"tags,omitempty"`
	Properties *TwinProperties   `json:"properties,omitempty"`
}

// TwinProperties holds the desired properties.
type TwinProperties struct {
	Desired map[string]any `json:"desired"`
}

// ReprovisionPolicy is DPS's reprovisioning behaviour.
type ReprovisionPolicy struct {
	UpdateHubAssignment bool `json:"updateHubAssignment"`
	MigrateDeviceData   bool `json:"migrateDeviceData"`
}

// BulkOperation is the body of POST /enrollments.
type BulkOperation struct {
	Mode        string                 `json:"mode"`
	Enrollments []IndividualEnrollment `json:"enrollments"`
}

// Bulk modes and provisioning states.
const (
	ModeCreate = "create"
	ModeUpdate = "update"

	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"

	// MaxBulk is the service's limit of enrollments per bulk operation.
	MaxBulk = 10
)

// Sentinel errors.
var (
	// ErrIncomplete means a unit record lacks what its enrollment needs.
	ErrIncomplete = errors.New("unit record incomplete for its enrollment")
	// ErrSecretsNeeded means an enrollment needs key material the caller did
	// not allow into the export.
	ErrSecretsNeeded = errors.New("enrollment needs secrets")
)

// Profile is what the config adds to every enrollment.
type Profile struct {
	IoTHubs          []string
	AllocationPolicy string // hashed | geoLatency | static | custom
	IoTEdge          bool
	Factory          string
	Line             string
	FirmwareVersion  string
	// GroupKey, when set, is the symmetric-key group's primary key: the
	// enrollments of symmetric-key units then carry their derived keys.
	GroupKey []byte
}

// Check validates the profile against the DPS schema: allocationPolicy is
// hashed, geoLatency, static or custom, and static names exactly one hub.
func (p *Profile) Check() error {
	switch p.AllocationPolicy {
	case "", "hashed", "geoLatency", "custom":
	case "static":
		if len(p.IoTHubs) != 1 {
			return fmt.Errorf("%w: allocation policy static needs exactly one IoT hub (dps.iot_hubs), got %d", ErrOptions, len(p.IoTHubs))
		}
	default:
		return fmt.Errorf("%w: allocation policy %q: want hashed, geoLatency, static or custom (dps.allocation_policy)", ErrOptions, p.AllocationPolicy)
	}
	return nil
}

// Twin tag names.
const (
	TagSerial   = "serial"
	TagLine     = "line"
	TagFactory  = "factory"
	TagFirmware = "firmwareVersion"
)

// Attestation.Type values of the DPS service schema (station's own names
// are AttestTPM, AttestX509 and AttestSymmetricKey).
const (
	typeTPM          = "tpm"
	typeX509         = "x509"
	typeSymmetricKey = "symmetricKey"
)

// Individual builds the enrollment DPS needs for u. disabled sets
// provisioningStatus disabled (a revoked unit). A symmetric-key unit that is
// enabled needs p.GroupKey: without its derived key, DPS would generate a key
// the unit does not have, and that individual enrollment would beat the
// group and lock the unit out (ErrSecretsNeeded). A disabled one needs no key.
func (p *Profile) Individual(u *store.Unit, disabled bool) (*IndividualEnrollment, error) {
	e := &IndividualEnrollment{
		RegistrationID:     u.RegistrationID,
		DeviceID:           u.DeviceID,
		ProvisioningStatus: StatusEnabled,
	}
	if disabled {
		e.ProvisioningStatus = StatusDisabled
	}
	switch u.Attestation {
	case AttestTPM:
		if len(u.EKPublic) == 0 {
			return nil, fmt.Errorf("unit %s: no EK public: %w", u.Serial, ErrIncomplete)
		}
		if err := checkTPM2B("EK", u.EKPublic); err != nil {
			return nil, fmt.Errorf("unit %s: %w", u.Serial, err)
		}
		if u.EKSHA256 != "" {
			if sum := sha256.Sum256(u.EKPublic); u.EKSHA256 != hex.EncodeToString(sum[:]) {
				return nil, fmt.Errorf("unit %s: recorded EK SHA-256 is not the hash of the recorded EK: %w", u.Serial, ErrIncomplete)
			}
		}
		if len(u.SRKPublic) > 0 {
			if err := checkTPM2B("SRK", u.SRKPublic); err != nil {
				return nil, fmt.Errorf("unit %s: %w", u.Serial, err)
			}
		}
		derived := RegistrationID(u.EKPublic)
		if e.RegistrationID == "" {
			e.RegistrationID = derived
		} else if e.RegistrationID != derived {
			return nil, fmt.Errorf("unit %s: recorded registration ID %s is not the one its SDK derives from the EK (%s): %w",
				u.Serial, e.RegistrationID, derived, ErrIncomplete)
		}
		t := &TPMAttestation{EndorsementKey: base64.StdEncoding.EncodeToString(u.EKPublic)}
		if len(u.SRKPublic) > 0 {
			t.StorageRootKey = base64.StdEncoding.EncodeToString(u.SRKPublic)
		}
		e.Attestation = Attestation{Type: typeTPM, TPM: t}
	case AttestX509:
		if len(u.Cert) == 0 {
			return nil, fmt.Errorf("unit %s: no certificate: %w", u.Serial, ErrIncomplete)
		}
		leaf, err := x509.ParseCertificate(u.Cert)
		if err != nil {
			return nil, fmt.Errorf("unit %s: recorded certificate: %v: %w", u.Serial, err, ErrIncomplete)
		}
		if leaf.Subject.CommonName != e.RegistrationID {
			return nil, fmt.Errorf("unit %s: certificate CN %q is not the registration ID %q (DPS requires them equal): %w",
				u.Serial, leaf.Subject.CommonName, e.RegistrationID, ErrIncomplete)
		}
		e.Attestation = Attestation{Type: typeX509, X509: &X509Attestation{
			ClientCertificates: &X509Certificates{Primary: &X509Certificate{Certificate: certPEM(u.Cert)}},
		}}
	case AttestSymmetricKey:
		if len(p.GroupKey) == 0 && !disabled {
			return nil, fmt.Errorf("unit %s: an enabled symmetric-key enrollment without its derived key would lock the unit out: %w", u.Serial, ErrSecretsNeeded)
		}
		e.Attestation = Attestation{Type: typeSymmetricKey, SymmetricKey: &SymmetricKeyAttest{}} // keys below, once the ID is checked
	default:
		return nil, fmt.Errorf("unit %s: attestation %q: %w", u.Serial, u.Attestation, ErrIncomplete)
	}
	if e.RegistrationID == "" {
		return nil, fmt.Errorf("unit %s: no registration ID: %w", u.Serial, ErrIncomplete)
	}
	if err := regid.Validate(e.RegistrationID, u.Attestation == AttestX509); err != nil {
		return nil, fmt.Errorf("unit %s: %w", u.Serial, err)
	}
	if sk := e.Attestation.SymmetricKey; sk != nil && len(p.GroupKey) > 0 {
		dk, err := DeviceKey(p.GroupKey, e.RegistrationID)
		if err != nil {
			return nil, fmt.Errorf("unit %s: %w", u.Serial, err)
		}
		sk.PrimaryKey = base64.StdEncoding.EncodeToString(dk)
		sk.SecondaryKey = sk.PrimaryKey
	}
	p.decorate(&e.Capabilities, &e.IoTHubs, &e.AllocationPolicy, &e.InitialTwin, u.Serial)
	return e, nil
}

func (p *Profile) decorate(caps **DeviceCapabilities, hubs *[]string, alloc *string, twin **InitialTwin, serial string) {
	if p.IoTEdge {
		*caps = &DeviceCapabilities{IoTEdge: true}
	}
	if len(p.IoTHubs) > 0 {
		*hubs = append([]string(nil), p.IoTHubs...)
	}
	*alloc = p.AllocationPolicy
	tags := map[string]string{}
	if serial != "" {
		tags[TagSerial] = serial
	}
	for k, v := range map[string]string{TagLine: p.Line, TagFactory: p.Factory, TagFirmware: p.FirmwareVersion} {
		if v != "" {
			tags[k] = v
		}
	}
	if len(tags) > 0 {
		*twin = &InitialTwin{Tags: tags}
	}
}

// checkTPM2B checks that b is a TPM2B: a 2-byte big-endian size, then that
// many bytes. DPS registers (and the SDK sends) the TPM2B_PUBLIC; go-tpm's
// legacy Public.Encode gives the TPMT_PUBLIC without the size, a mistake
// that would enroll a key no unit ever presents.
func checkTPM2B(what string, b []byte) error {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return fmt.Errorf("recorded %s is not a TPM2B_PUBLIC (size prefix missing or wrong): %w", what, ErrIncomplete)
	}
	return nil
}

// GroupID is the enrollment group ID of a signing CA: "ca-" and the first
// 16 bytes of its DER's SHA-256 in hex. A function of the certificate, so the
// disabled group written on revocation replaces the enabled one.
func GroupID(caDER []byte) string {
	sum := sha256.Sum256(caDER)
	return "ca-" + hex.EncodeToString(sum[:16])
}

// X509Group builds the enrollment group keyed on a signing CA.
func (p *Profile) X509Group(caDER []byte, disabled bool) *EnrollmentGroup {
	g := &EnrollmentGroup{
		EnrollmentGroupID: GroupID(caDER),
		Attestation: Attestation{Type: typeX509, X509: &X509Attestation{
			SigningCertificates: &X509Certificates{Primary: &X509Certificate{Certificate: certPEM(caDER)}},
		}},
		ProvisioningStatus: StatusEnabled,
	}
	if disabled {
		g.ProvisioningStatus = StatusDisabled
	}
	p.decorate(&g.Capabilities, &g.IoTHubs, &g.AllocationPolicy, &g.InitialTwin, "")
	return g
}

// SymmetricGroup builds the symmetric-key group; it carries the group key
// itself, so it is a secret.
func (p *Profile) SymmetricGroup(id string) (*EnrollmentGroup, error) {
	if len(p.GroupKey) == 0 {
		return nil, fmt.Errorf("symmetric-key group %s: %w", id, ErrSecretsNeeded)
	}
	k := base64.StdEncoding.EncodeToString(p.GroupKey)
	g := &EnrollmentGroup{
		EnrollmentGroupID:  id,
		Attestation:        Attestation{Type: typeSymmetricKey, SymmetricKey: &SymmetricKeyAttest{PrimaryKey: k, SecondaryKey: k}},
		ProvisioningStatus: StatusEnabled,
	}
	p.decorate(&g.Capabilities, &g.IoTHubs, &g.AllocationPolicy, &g.InitialTwin, "")
	return g, nil
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// compact is the stable compact encoding (no HTML escaping, no newline):
// what the bookkeeping digest covers and what Marshal indents.
func compact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// indent turns compact JSON into Marshal's layout.
func indent(c []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(c) * 5 / 4)
	if err := json.Indent(&buf, c, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// Marshal is the stable encoding of every file in an export: two-space
// indentation, no HTML escaping, a final newline. Struct fields keep their
// order and map keys are sorted, so the same value gives the same bytes.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
