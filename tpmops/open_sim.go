//go:build cgo

package tpmops

import (
	"fmt"
	"io"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
)

// openSimulator starts go-tpm-tools' in-process simulator (cgo).
func openSimulator(seed *int64) (transport.TPM, io.Closer, error) {
	var (
		s   *simulator.Simulator
		err error
	)
	if seed != nil {
		s, err = simulator.GetWithFixedSeedInsecure(*seed)
	} else {
		s, err = simulator.Get()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("starting simulator: %w", err)
	}
	tr := transport.FromReadWriteCloser(s)
	return tr, tr, nil
}
