// Package cli holds what station's two programs say the same way: station
// (cmd) and the auditor's station-audit (internal/auditcli). It has the exit
// codes of the contract, the usage error (exit 2) with the positional
// argument checks that return it, the reading of a PEM key named by a flag,
// and small output helpers. It links no cgo or TPM code, so station-audit
// can import it and still cross-build with CGO_ENABLED=0; which error gets
// which code stays in cmd/errors.go's table (and auditcli's cgo-free part
// of it).
package cli
