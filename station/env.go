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

// Init creates the station signing key and database if they are missing
// (idempotent) and records a start-up event in the new database's audit
// log. Only Init creates a database, and only where no file exists: a file
// at station.db that is not this station's initialized database is refused
// (store.ErrNotStationDB, store.ErrDamaged), never taken as a new station.
func Init(cfg *configs.Config, version string) (created bool, err error) {
	keyPath := cfg.Path(cfg.Station.SigningKey)
	if !configs.IsURI(cfg.Station.SigningKey) {
		created, err = audit.GenerateKey(keyPath)
		if err != nil {
			return false, fmt.Errorf("creating the station signing key %s: %w", keyPath, err)
		}
	}
	if _, err := os.Lstat(cfg.Station.DB); !errors.Is(err, fs.ErrNotExist) {
		env, err := OpenEnv(cfg, version) // refuses a file that is not this station's database
		if err != nil {
			return created, err
		}
		return created, env.Close()
	}
	signer, closeKey, err := OpenSigningKey(cfg)
	if err != nil {
		return created, err
	}
	defer closeKey()
	db, err := store.Create(cfg.Station.DB, dbOptions(cfg), func(db *store.DB) error {
		log, err := audit.Open(db, cfg.Station.ID, version, signer)
		if err != nil {
			return fmt.Errorf("opening the audit log: %w", err)
		}
		return db.Update(func(tx *bolt.Tx) error {
			if _, err := log.Append(tx, audit.Event{Type: "station.init", Operator: cfg.Station.Operator,
				Payload: map[string]any{"station": cfg.Station.ID, "version": version}}); err != nil {
				return err
			}
			_, err := log.Checkpoint(tx)
			return err
		})
	})
	if err != nil {
		return created, err
	}
	return true, db.Close()
}

func dbOptions(cfg *configs.Config) store.Options {
	return store.Options{StationID: cfg.Station.ID, Timeout: DBTimeout}
}

// OpenDB opens the station's database, which must exist and be this
// station's (see store.Open); readOnly for commands that only read it.
func OpenDB(cfg *configs.Config, readOnly bool) (*store.DB, error) {
	o := dbOptions(cfg)
	o.ReadOnly = readOnly
	db, err := store.Open(cfg.Station.DB, o)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no database at %s; run `station init` (or give --db)", ErrNotInitialized, cfg.Station.DB)
	}
	return db, err
}

// OpenEnv opens the database and the audit log with the station key. The
// station must have been initialized (station init): a missing database is
// ErrNotInitialized, never silently created (a log that is not there must
// not verify as an empty one).
func OpenEnv(cfg *configs.Config, version string) (*Env, error) {
	db, err := OpenDB(cfg, false)
	if err != nil {
		return nil, err
	}
	signer, closeKey, err := OpenSigningKey(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	log, err := audit.Open(db, cfg.Station.ID, version, signer)
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
