//go:build unix

package store

import (
	"os"
	"syscall"
)

// mapPages maps the first n bytes of f read-only (the page walk reads
// every page; mapping costs a third of reading them).
func mapPages(f *os.File, n int) ([]byte, func(), error) {
	b, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { _ = syscall.Munmap(b) }, nil
}
