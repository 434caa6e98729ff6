// Command station gives every unit on a production line a TPM-rooted identity.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/factory-id/station/cmd"
)

func main() {
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.NewRootCommand(version).ExecuteContext(ctx)
	stop()
	os.Exit(cmd.Exit(err, os.Stderr))
}
