//go:build enrollstub

// This file exists only on branch enroll, so that station/export.go and
// station/revoke.go (and cmd) compile and test before the integrator's Env
// lands: build with -tags enrollstub. The real Env (same fields, same
// OpenEnv/Close) replaces it; delete this file on merge.

package station

import (
	"crypto"
	"time"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/store"
)

// Env is the opened station (stub of the integrator's type).
type Env struct {
	Config  *configs.Config
	DB      *store.DB
	Log     *audit.Log
	Signer  crypto.Signer
	Version string
}

// OpenEnv opens the database, the station key and the audit log.
func OpenEnv(cfg *configs.Config, version string) (*Env, error) {
	signer, err := audit.LoadPrivateKey(cfg.Path(cfg.Station.SigningKey))
	if err != nil {
		return nil, err
	}
	db, err := store.Open(cfg.Station.DB, 2*time.Second)
	if err != nil {
		return nil, err
	}
	l, err := audit.Open(db.DB, cfg.Station.ID, version, signer)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Env{Config: cfg, DB: db, Log: l, Signer: signer, Version: version}, nil
}

// Close closes the database.
func (e *Env) Close() error { return e.DB.Close() }
