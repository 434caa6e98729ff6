package tpmops

import (
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// ResourceManaged reports whether the connection goes through a resource
// manager (the kernel's /dev/tpmrm*), which flushes a client's transient
// objects and sessions when it disconnects.
func (t *TPM) ResourceManaged() bool {
	return strings.HasPrefix(t.addr, "/dev/tpmrm")
}

// FlushStale flushes transient objects and sessions left loaded by a client
// that died mid-command on a TPM without a resource manager (swtpm's raw
// port, /dev/tpm0, the simulator), where they would otherwise occupy object
// slots until the next TPM restart. Transient objects and sessions are
// volatile by definition — nothing persistent is touched — and on a fixture
// station is the TPM's only client. It returns how many it flushed.
func (t *TPM) FlushStale() (int, error) {
	if t.ResourceManaged() {
		return 0, nil
	}
	hs, err := t.Transients()
	if err != nil {
		return 0, err
	}
	for _, h := range hs {
		if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tr); err != nil {
			return 0, fmt.Errorf("flushing stale handle 0x%08x: %w", uint32(h), classify(err))
		}
	}
	return len(hs), nil
}
