// Command station gives every unit on a production line a TPM-rooted identity.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/factory-id/station/cmd"
	"github.com/factory-id/station/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.NewRootCommand(buildinfo.Read().String()).ExecuteContext(ctx)
	stop()
	os.Exit(cmd.Exit(err, os.Stderr))
}
