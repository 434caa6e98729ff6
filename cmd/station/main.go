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
	code := cmd.Run(ctx, buildinfo.Read().String(), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
