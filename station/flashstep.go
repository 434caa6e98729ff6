package station

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/tpmops"
	"github.com/factory-id/station/tsskey"
)

// flashSpec is the unit's flash target list ("" when none is configured).
func (r *unitRun) flashSpec() string {
	if r.req.FlashSpec != "" {
		return r.req.FlashSpec
	}
	return r.p.env.Config.Flash.Target
}

// bundle builds and signs the unit's credential bundle.
func (p *Provisioner) bundle(r *unitRun) (*credbundle.Bundle, error) {
	cfg := p.env.Config
	b := credbundle.Bundle{
		Serial:          r.u.Serial,
		RegistrationID:  r.u.RegistrationID,
		Attestation:     r.u.Attestation,
		IDScope:         cfg.DPS.IDScope,
		GlobalEndpoint:  cfg.DPS.GlobalEndpoint,
		DeviceKeyHandle: r.u.DeviceKeyHandle,
		CertPEM:         pemCerts(r.u.Cert),
		ChainPEM:        pemCerts(r.u.Chain...),
		FirmwareVersion: cfg.Firmware.Version,
		StationID:       cfg.Station.ID,
	}
	if p.firmware != nil {
		b.FirmwareSHA256 = p.firmware.SHA256
	}
	var err error
	if b.TPMKey, err = r.tpmKeyFile(); err != nil {
		return nil, err
	}
	if r.u.Attestation == enroll.AttestSymmetricKey {
		// The per-device key, derived from the group key, reaches the unit
		// only sealed under its SRK: only that TPM can unseal it.
		var key []byte
		key, err = enroll.DeviceKey(p.groupKey, r.u.RegistrationID)
		if err != nil {
			return nil, err
		}
		var secrets *tpmops.Secrets
		if secrets, err = r.secretSession(); err == nil {
			b.SealedKey, err = secrets.Seal(r.srk, key)
		}
		clear(key)
		if err != nil {
			return nil, err
		}
	}
	nb, err := credbundle.NewBundle(b)
	if err != nil {
		return nil, err
	}
	if err := nb.Sign(p.env.Signer); err != nil {
		return nil, fmt.Errorf("signing the bundle: %w", err)
	}
	return nb, nil
}

// tpmKeyFile returns the device key as a TSS2 private key file (DER) for the
// bundle, after loading the journaled blob under the SRK to prove the file
// works on this TPM and is the key at the device key handle. A unit whose
// record predates the journaled private (its blob is lost) gets none: its
// bundle stays version 1.
func (r *unitRun) tpmKeyFile() ([]byte, error) {
	if len(r.u.DeviceKeyPrivate) == 0 || len(r.u.DeviceKeyPublic) == 0 {
		return nil, nil
	}
	if err := r.ensureDeviceKey(); err != nil {
		return nil, err
	}
	loaded, err := r.tpm.CheckKeyBlob(r.srk, r.u.DeviceKeyPublic, r.u.DeviceKeyPrivate)
	if err != nil {
		return nil, fmt.Errorf("the device key's recorded blob does not load under the SRK at 0x%08x: %w", uint32(r.srk.Handle), err)
	}
	if !bytes.Equal(loaded.Name, r.devKey.Name) {
		return nil, fmt.Errorf("%w: the device key's recorded blob is not the key at 0x%08x", tpmops.ErrForeignKey, r.u.DeviceKeyHandle)
	}
	return tsskey.Key{
		EmptyAuth: true, Parent: uint32(r.srk.Handle),
		Public: r.u.DeviceKeyPublic, Private: r.u.DeviceKeyPrivate,
	}.MarshalDER()
}

// stepFlash writes the firmware and the signed credential bundle to every
// target and reads each back; the targets' digests go into the record.
func (r *unitRun) stepFlash(ctx context.Context) ([]audit.Event, error) {
	spec := r.flashSpec()
	if spec == "" {
		return []audit.Event{{Type: "provision.flash", Payload: map[string]any{"skipped": "no flash target configured"}}}, nil
	}
	if err := r.ensureSRK(); err != nil {
		return nil, err
	}
	targets, err := flash.Open(spec, r.p.env.Config.Flash, r.tpm)
	if err != nil {
		return nil, err
	}
	b, err := r.p.bundle(r)
	if err != nil {
		return nil, err
	}
	job := flash.Job{Serial: r.u.Serial, Firmware: r.p.firmware, Bundle: b, Force: r.req.Force, StationKey: r.p.env.Signer.Public()}
	var details []map[string]string
	r.u.Flash = map[string]string{}
	for _, t := range targets {
		res, err := t.Write(ctx, job)
		if err != nil {
			return nil, err
		}
		d := map[string]string{"target": t.Name()}
		for k, v := range res.Detail {
			d[k] = v
		}
		details = append(details, d)
		r.u.Flash[t.Name()] = b.DigestHex()
	}
	r.u.FlashTarget = spec
	r.u.BundleSHA256 = b.DigestHex()
	if r.p.firmware != nil {
		r.u.FirmwareSHA256 = r.p.firmware.SHA256
	}
	return []audit.Event{{Type: "provision.flash", Payload: map[string]any{
		"targets": details, "bundle_digest": b.DigestHex(), "firmware_sha256": r.u.FirmwareSHA256,
		"bundle_version": b.Version, "tpm_key_file": len(b.TPMKey) > 0,
	}}}, nil
}

// pemCerts encodes DER certificates as concatenated PEM blocks.
func pemCerts(ders ...[]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}
