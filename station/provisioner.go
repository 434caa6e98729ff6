package station

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/agent"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// Provisioner holds what every unit of a run shares, loaded once: the TPM
// vendor roots, the escrow key, the line intermediate, the firmware image.
// It is safe for concurrent use by several fixtures.
type Provisioner struct {
	env         *Env
	vendorRoots *tpmops.VendorRoots
	escrow      *Escrower
	issuer      *certgen.Issuer // with its key, unless station agent holds it
	leaves      leafIssuer      // issuer, or the agent's client
	firmware    *flash.Firmware
	groupKey    []byte
}

// leafIssuer signs device certificates under the issuance policy: the
// line intermediate in this process, or station agent (agent.sock).
type leafIssuer interface {
	Issue(certgen.LeafRequest) (*x509.Certificate, error)
}

// NewProvisioner checks the configuration's files and loads the shared
// material. Configuration problems come back as *configs.Error (exit 2).
// With agent.sock set the issuer key stays in station agent, which must
// answer now (agent.ErrUnavailable otherwise); else the key is opened here,
// its password from $STATION_PKI_KEY_PASSWORD (getenv).
func NewProvisioner(env *Env, getenv func(string) string) (*Provisioner, error) {
	cfg := env.Config
	if err := cfg.CheckProvision(); err != nil {
		return nil, err
	}
	p := &Provisioner{env: env}
	var err error
	if cfg.TPM.VendorRoots != "" {
		p.vendorRoots, err = tpmops.LoadVendorRoots(cfg.File(configs.KeyVendorRoots))
		if err != nil {
			return nil, &configs.Error{Key: string(configs.KeyVendorRoots), Err: err}
		}
	}
	if p.escrow, err = LoadEscrower(cfg.File(configs.KeyEscrowKey)); err != nil {
		return nil, &configs.Error{Key: string(configs.KeyEscrowKey), Err: err}
	}
	if cfg.Agent.Sock != "" {
		if p.issuer, err = certgen.LoadIssuer(cfg.File(configs.KeyIssuerCert), cfg.File(configs.KeyChain), cfg.File(configs.KeyRoot)); err != nil {
			return nil, err
		}
		if err := p.checkLifetime(); err != nil {
			return nil, err
		}
		if p.leaves, err = agent.Dial(cfg.Path(cfg.Agent.Sock), p.issuer, AgentPolicy(cfg)); err != nil {
			return nil, err
		}
	} else {
		if p.issuer, err = OpenLineIssuer(cfg, EnvPassword(getenv)); err != nil {
			return nil, err
		}
		p.leaves = p.issuer
	}
	if cfg.Firmware.Image != "" {
		if p.firmware, err = flash.LoadFirmware(cfg.File(configs.KeyFirmware), cfg.Firmware.SHA256); err != nil {
			p.Close()
			return nil, err
		}
	}
	if cfg.DPS.Attestation == enroll.AttestSymmetricKey {
		if p.groupKey, err = GroupKey(cfg, getenv); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// EnvPassword is the issuer key's password from $STATION_PKI_KEY_PASSWORD,
// as the func certgen.OpenKey calls when the key is encrypted.
func EnvPassword(getenv func(string) string) func() ([]byte, error) {
	return func() ([]byte, error) {
		if v := getenv(configs.EnvPKIKeyPassword); v != "" {
			return []byte(v), nil
		}
		return nil, &configs.Error{Key: string(configs.KeyIssuerKey), Err: errors.New("the key is encrypted: set " + configs.EnvPKIKeyPassword +
			" (or run `station agent`, which asks for it once, and set STATION_AGENT_SOCK)")}
	}
}

// OpenLineIssuer opens the line intermediate with its key (pki.issuer_key;
// password is called if it is an encrypted PEM), and refuses one whose
// chain ends before the warehouse period does. station agent holds what it
// returns for the whole shift.
func OpenLineIssuer(cfg *configs.Config, password func() ([]byte, error)) (*certgen.Issuer, error) {
	keyRef := cfg.PKI.IssuerKey
	if !configs.IsURI(keyRef) {
		keyRef = cfg.Path(keyRef)
	}
	is, err := certgen.OpenIssuer(cfg.File(configs.KeyIssuerCert), keyRef, cfg.File(configs.KeyChain), cfg.File(configs.KeyRoot), password)
	if err != nil {
		return nil, err
	}
	if err := issuerOutlivesWarehouse(cfg, is); err != nil {
		is.Close()
		return nil, err
	}
	return is, nil
}

func (p *Provisioner) checkLifetime() error { return issuerOutlivesWarehouse(p.env.Config, p.issuer) }

// issuerOutlivesWarehouse: an issuer that dies before the warehouse period
// ends would refuse every unit at the certificate step, after its keys were
// made: say so now, as the configuration problem it is.
func issuerOutlivesWarehouse(cfg *configs.Config, is *certgen.Issuer) error {
	if _, err := is.CheckLifetime(time.Now(), cfg.PKI.Warehouse.D()); err != nil {
		return &configs.Error{Key: string(configs.KeyIssuerCert), Err: err}
	}
	return nil
}

// AgentPolicy is the issuance policy's parameters from the configuration,
// as station agent applies them and its clients check.
func AgentPolicy(cfg *configs.Config) agent.Policy {
	return agent.Policy{SANURI: cfg.PKI.SANURI, Validity: cfg.PKI.Validity.D(), Warehouse: cfg.PKI.Warehouse.D(), MaxIssued: cfg.PKI.MaxIssued}
}

// Recorded returns what the database says of serial: its status and
// registration ID ("" and "" for a serial it does not know).
func (p *Provisioner) Recorded(serial string) (status, registrationID string, err error) {
	err = p.env.DB.View(func(tx *bolt.Tx) error {
		u, err := store.GetUnit(tx, serial)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		status, registrationID = u.Status, u.RegistrationID
		return nil
	})
	return status, registrationID, err
}

// Close releases the issuer key (an HSM session) and wipes the group key.
func (p *Provisioner) Close() error {
	clear(p.groupKey)
	if p.issuer != nil {
		return p.issuer.Close()
	}
	return nil
}

// registrationID is the unit's DPS registration ID: derived from the EK for
// TPM attestation, from the configured pattern otherwise.
func (p *Provisioner) registrationID(serial string, ekPublic []byte) (string, error) {
	cfg := p.env.Config
	return enroll.RegistrationIDFor(cfg.DPS.Attestation, cfg.DPS.RegistrationID, map[string]string{
		"serial": serial, "factory": cfg.DPS.Factory, "line": cfg.DPS.Line, "station": cfg.Station.ID,
	}, ekPublic)
}

func issuedKey(issuerSHA string) string { return "issued:" + issuerSHA }

func parseCount(b []byte) int {
	n, _ := strconv.Atoi(string(b))
	return n
}

func fmtCount(n int) []byte { return []byte(fmt.Sprint(n)) }
