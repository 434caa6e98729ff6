package station

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/tpmops"
)

// Provisioner holds what every unit of a run shares, loaded once: the TPM
// vendor roots, the escrow key, the line intermediate, the firmware image.
// It is safe for concurrent use by several fixtures.
type Provisioner struct {
	env         *Env
	vendorRoots *tpmops.VendorRoots
	escrow      *Escrower
	issuer      *certgen.Issuer
	firmware    *flash.Firmware
	groupKey    []byte
}

// NewProvisioner checks the configuration's files and loads the shared
// material. Configuration problems come back as *configs.Error (exit 2).
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
	keyRef := cfg.PKI.IssuerKey
	if !configs.IsURI(keyRef) {
		keyRef = cfg.Path(keyRef)
	}
	password := func() ([]byte, error) {
		if v := getenv(configs.EnvPKIKeyPassword); v != "" {
			return []byte(v), nil
		}
		return nil, &configs.Error{Key: string(configs.KeyIssuerKey), Err: errors.New("the key is encrypted: set " + configs.EnvPKIKeyPassword)}
	}
	p.issuer, err = certgen.OpenIssuer(cfg.File(configs.KeyIssuerCert), keyRef, cfg.File(configs.KeyChain), cfg.File(configs.KeyRoot), password)
	if err != nil {
		return nil, err
	}
	// An issuer that dies before the warehouse period ends would refuse
	// every unit at the certificate step, after its keys were made: say so
	// now, as the configuration problem it is.
	if _, err := p.issuer.CheckLifetime(time.Now(), cfg.PKI.Warehouse.D()); err != nil {
		p.Close()
		return nil, &configs.Error{Key: string(configs.KeyIssuerCert), Err: err}
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
