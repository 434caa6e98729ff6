//go:build !unix

package store

import (
	"io"
	"os"
)

// mapPages reads the first n bytes of f (no mmap here: the auditor's
// Windows build of the verifiers reads the pages instead).
func mapPages(f *os.File, n int) ([]byte, func(), error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, int64(n)), b); err != nil {
		return nil, nil, err
	}
	return b, func() {}, nil
}
