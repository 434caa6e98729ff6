// Package fsync makes a folder's entries durable: after a file is created,
// renamed or removed in a folder, syncing the folder is what puts the
// change itself on the medium (fsync of the file covers only its data).
package fsync

import (
	"fmt"
	"os"
)

// Dir syncs the folder dir.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	return nil
}
