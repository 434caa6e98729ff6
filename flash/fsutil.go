package flash

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/factory-id/station/internal/fsync"
)

// readFileLimited reads a regular file (not following a final symlink) of
// at most limit bytes.
func readFileLimited(path string, limit int64) ([]byte, error) {
	return readFileFlags(path, limit, unix.O_NOFOLLOW)
}

func readFileFlags(path string, limit int64, flags int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|flags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	// Drop cached pages first, so what is compared is read from the medium
	// rather than the copy the kernel kept from the write (best effort).
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// writeAtomic writes data to dir/name through a temporary file in dir:
// write, fsync, rename over the name, fsync the folder. A reader sees the
// old file or the new one, never a mix. A symlink at the name is replaced,
// not followed.
func writeAtomic(dir, name string, data []byte, mode os.FileMode) (err error) {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	// After the data is on the medium, forget the cached copy so the
	// read-back reads the medium (best effort).
	_ = unix.Fadvise(int(tmp.Fd()), 0, 0, unix.FADV_DONTNEED)
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return fsync.Dir(dir)
}
