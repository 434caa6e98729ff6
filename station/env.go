package station

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/store"
	bolt "go.etcd.io/bbolt"
)

// ErrNotInitialized means the station has no signing key or database yet.
var ErrNotInitialized = errors.New("station is not initialized")

// DBTimeout is how long a command waits for another process's database lock.
var DBTimeout = 3 * time.Second

// Env is what every station operation works in: the configuration, the
// database, the audit log and the station's signing key.
type Env struct {
	Config  *configs.Config
	DB      *store.DB
	Log     *audit.Log
	Signer  crypto.Signer
	Version string

	closeKey func() error // releases an HSM-held signing key
}

// Init creates the station database and signing key if they are missing
// (idempotent) and records a start-up event the first time.
func Init(cfg *configs.Config, version string) (created bool, err error) {
	keyPath := cfg.Path(cfg.Station.SigningKey)
	if !configs.IsURI(cfg.Station.SigningKey) {
		created, err = audit.GenerateKey(keyPath)
		if err != nil {
			return false, fmt.Errorf("creating the station signing key %s: %w", keyPath, err)
		}
	}
	env, err := openEnv(cfg, version, true)
	if err != nil {
		return created, err
	}
	defer env.Close()
	err = env.DB.Update(func(tx *bolt.Tx) error {
		if store.GetMeta(tx, "initialized") != nil {
			return nil
		}
		created = true
		if _, err := env.Log.Append(tx, audit.Event{Type: "station.init", Operator: cfg.Station.Operator,
			Payload: map[string]any{"station": cfg.Station.ID, "version": version}}); err != nil {
			return err
		}
		if _, err := env.Log.Checkpoint(tx); err != nil {
			return err
		}
		return store.PutMeta(tx, "initialized", []byte(time.Now().UTC().Format(time.RFC3339)))
	})
	return created, err
}

// OpenEnv opens the database and the audit log with the station key. The
// station must have been initialized (station init): a missing database is
// ErrNotInitialized, never silently created (a log that is not there must
// not verify as an empty one).
func OpenEnv(cfg *configs.Config, version string) (*Env, error) {
	return openEnv(cfg, version, false)
}

func openEnv(cfg *configs.Config, version string, create bool) (*Env, error) {
	if !create {
		if _, err := os.Stat(cfg.Station.DB); err != nil {
			return nil, fmt.Errorf("%w: no database at %s; run `station init` (or give --db)", ErrNotInitialized, cfg.Station.DB)
		}
	}
	signer, closeKey, err := OpenSigningKey(cfg)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(cfg.Station.DB, DBTimeout)
	if err != nil {
		closeKey()
		return nil, err
	}
	log, err := audit.Open(db.DB, cfg.Station.ID, version, signer)
	if err == nil {
		// Nothing goes on over a log that is not the one the station signed
		// (rewritten, stripped of checkpoints, rolled back behind the
		// witness): refused here, before any TPM or file is touched.
		log.SetWitness(cfg.Path(cfg.Station.Witness))
		err = log.Check()
	}
	if err != nil {
		db.Close()
		closeKey()
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	return &Env{Config: cfg, DB: db, Log: log, Signer: signer, Version: version, closeKey: closeKey}, nil
}

// LoadSigningKey opens the station's signing key (a PEM file, or a kms URI)
// and returns its public key.
func LoadSigningKey(cfg *configs.Config) (crypto.PublicKey, error) {
	s, closeKey, err := OpenSigningKey(cfg)
	if err != nil {
		return nil, err
	}
	defer closeKey()
	return s.Public(), nil
}

// OpenSigningKey opens the station key: a PEM file, or a key behind a kms
// URI (pkcs11:...), which stays in its HSM. Call the returned func to
// release it.
func OpenSigningKey(cfg *configs.Config) (crypto.Signer, func() error, error) {
	ref := cfg.Station.SigningKey
	if configs.IsURI(ref) {
		k, err := certgen.OpenKey(ref, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("opening the station signing key: %w", err)
		}
		return k.Signer, k.Close, nil
	}
	s, err := audit.LoadPrivateKey(cfg.Path(ref))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: no signing key at %s; run `station init` first", ErrNotInitialized, cfg.Path(ref))
	}
	if err != nil {
		return nil, nil, err
	}
	return s, func() error { return nil }, nil
}

// Close releases the database and the signing key.
func (e *Env) Close() error {
	return errors.Join(e.DB.Close(), e.closeKey())
}

// Operator returns who is running the command.
func (e *Env) Operator() string {
	if e.Config.Station.Operator != "" {
		return e.Config.Station.Operator
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
