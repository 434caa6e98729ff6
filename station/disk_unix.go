//go:build unix

package station

import "golang.org/x/sys/unix"

// diskSpace is the space available to this process on dir's file system.
func diskSpace(dir string) (space, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		return space{}, err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return space{}, err
	}
	bs := uint64(s.Bsize)
	return space{free: uint64(s.Bavail) * bs, total: uint64(s.Blocks) * bs, device: uint64(st.Dev)}, nil
}
