// Command station-audit is the auditor's verifier: it checks station's audit
// and DPS enrollment exports offline, and builds without cgo for Windows,
// macOS and Linux (docs/AUDITOR.md).
package main

import (
	"os"

	"github.com/factory-id/station/internal/auditcli"
	"github.com/factory-id/station/internal/buildinfo"
)

func main() {
	err := auditcli.NewRootCommand(buildinfo.Read().String()).Execute()
	os.Exit(auditcli.Exit(err, os.Stderr))
}
