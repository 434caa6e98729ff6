package station

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/store"
)

// Backup writes a consistent, checked copy of the station's database to out
// (0600, atomically), also while a running batch holds the database (see
// store.Backup). The copy opens as this station's database: restoring it is
// copying it back to station.db while no station command runs.
func Backup(cfg *configs.Config, out string) (*store.BackupInfo, error) {
	info, err := store.Backup(cfg.Station.DB, out, dbOptions(cfg))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no database at %s; run `station init` (or give --db)", ErrNotInitialized, cfg.Station.DB)
	}
	return info, err
}
