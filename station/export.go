package station

import (
	"crypto"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/enroll"
)

// ExportOptions are the flags of `station enroll export`.
type ExportOptions struct {
	Format  string
	Out     string
	Filter  enroll.Filter
	OnlyNew bool
	// IncludeSecrets puts the derived keys of symmetric-key units (and the
	// group key, for dps-group) into the export; EncryptTo is then required.
	IncludeSecrets bool
	EncryptTo      crypto.PublicKey
	Operator       string
	// Getenv reads the environment for dps.group_key "env:NAME" (os.Getenv
	// if nil).
	Getenv func(string) string
}

// ExportResult is what an export wrote.
type ExportResult struct {
	Format         string           `json:"format"`
	Out            string           `json:"out"`
	ManifestSHA256 string           `json:"manifest_sha256,omitempty"`
	Counts         *enroll.Counts   `json:"counts,omitempty"`
	Files          int              `json:"files"`
	Rows           int              `json:"rows,omitempty"`
	Manifest       *enroll.Manifest `json:"-"`
}

// Export writes the enrollments of the station's units: the files under a
// read-only transaction (provisioning goes on), then the export's
// bookkeeping, an audit record naming the manifest's SHA-256 and a signed
// checkpoint commit together, the files moving into place just before. A
// concurrent export makes the later one fail with enroll.ErrConcurrentExport.
func Export(env *Env, o ExportOptions) (*ExportResult, error) {
	cfg := env.Config
	eo := enroll.Options{
		Format: o.Format, Out: o.Out, Filter: o.Filter, OnlyNew: o.OnlyNew,
		StationID: cfg.Station.ID, Signer: env.Signer, Attestation: cfg.DPS.Attestation,
		Profile: enroll.Profile{
			IoTHubs: cfg.DPS.IoTHubs, AllocationPolicy: cfg.DPS.AllocationPolicy, IoTEdge: cfg.DPS.IoTEdge,
			Factory: cfg.DPS.Factory, Line: cfg.DPS.Line, FirmwareVersion: cfg.Firmware.Version,
		},
	}
	if o.IncludeSecrets {
		if o.EncryptTo == nil {
			return nil, fmt.Errorf("%w: --include-secrets needs --encrypt-to PUB.pem", enroll.ErrOptions)
		}
		k, err := GroupKey(cfg, o.Getenv)
		if err != nil {
			return nil, err
		}
		eo.Profile.GroupKey, eo.EncryptTo = k, o.EncryptTo
	}
	if o.Format == enroll.FormatGroup && cfg.PKI.IssuerCert != "" {
		b, err := os.ReadFile(cfg.Path(cfg.PKI.IssuerCert))
		if err != nil {
			return nil, &configs.Error{Key: "pki.issuer_cert", Err: err}
		}
		ca, err := enroll.ParseCACert(b)
		if err != nil {
			return nil, &configs.Error{Key: "pki.issuer_cert", Err: err}
		}
		eo.LineCA = ca.Raw
	}
	out := &ExportResult{Format: o.Format, Out: o.Out}
	// The files are written under a read-only transaction, so provisioning
	// is not held up; the bookkeeping, the audit record and the checkpoint
	// then commit together in a short write.
	var res *enroll.Result
	err := env.DB.View(func(tx *bolt.Tx) error {
		var err error
		res, err = enroll.Export(tx, eo)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer res.Discard()
	err = env.DB.Update(func(tx *bolt.Tx) error {
		if err := res.Record(tx); err != nil {
			return err
		}
		payload := map[string]any{"kind": "enrollments", "format": o.Format, "out": res.Out, "only_new": o.OnlyNew, "encrypted": o.IncludeSecrets}
		if f := filterPayload(o.Filter); len(f) > 0 {
			payload["filter"] = f
		}
		if res.Manifest != nil {
			out.ManifestSHA256, out.Counts, out.Files, out.Manifest = res.ManifestSHA256, &res.Manifest.Counts, len(res.Manifest.Files), res.Manifest
			payload["manifest_sha256"], payload["counts"] = res.ManifestSHA256, res.Manifest.Counts
		} else {
			out.Rows, out.Files = res.Rows, 1
			payload["rows"] = res.Rows
		}
		if _, err := env.Log.Append(tx, audit.Event{Type: audit.EventExport, Operator: o.Operator, Payload: payload}); err != nil {
			return err
		}
		if _, err := env.Log.Checkpoint(tx); err != nil {
			return err
		}
		return res.Install()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func filterPayload(f enroll.Filter) map[string]any {
	m := map[string]any{}
	if !f.Since.IsZero() {
		m["since"] = f.Since.UTC()
	}
	if !f.Until.IsZero() {
		m["until"] = f.Until.UTC()
	}
	if f.Status != "" {
		m["status"] = f.Status
	}
	if len(f.Serials) > 0 {
		m["serials"] = f.Serials
	}
	return m
}

// GroupKey reads dps.group_key ("env:NAME", or a file resolved against the
// config's folder) with enroll.LoadGroupKey. The key is never stored or
// logged; errors are *configs.Error naming the key.
func GroupKey(cfg *configs.Config, getenv func(string) string) ([]byte, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	ref := cfg.DPS.GroupKey
	if p := cfg.File(configs.KeyGroupKey); p != "" {
		ref = p
	}
	k, err := enroll.LoadGroupKey(ref, getenv)
	if err != nil {
		return nil, &configs.Error{Key: string(configs.KeyGroupKey), Err: err}
	}
	return k, nil
}
