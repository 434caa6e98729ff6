//go:build !linux

package cmd

// echoOff is a no-op here: each prompt still reads without echo
// (term.ReadPassword), only the moments between prompts echo.
func echoOff(int) (func(), error) { return func() {}, nil }
