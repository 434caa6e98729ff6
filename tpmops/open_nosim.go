//go:build !cgo

package tpmops

import (
	"errors"
	"io"

	"github.com/google/go-tpm/tpm2/transport"
)

// openSimulator: the simulator is C code; a build without cgo has none.
func openSimulator(*int64) (transport.TPM, io.Closer, error) {
	return nil, nil, errors.New("this station was built without cgo: no TPM simulator")
}
