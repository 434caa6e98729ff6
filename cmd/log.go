package cmd

import (
	"io"
	"log/slog"
	"strings"

	"github.com/factory-id/station/internal/cli"
)

// logFormats are the values of --log-format.
var logFormats = []string{"text", "json"}

// newLogger is the logger of one command run: log/slog to w (stderr), one
// record a line with its time, level and message, as logfmt text or as a
// JSON object (--log-format json, for log collectors). --verbose sets the
// level to info (each step of each unit); without it only warnings and
// errors are logged. Nothing secret is ever passed to it: attributes are
// serials, step names, subjects and fixture names.
func newLogger(w io.Writer, format string, verbose bool) (*slog.Logger, error) {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	o := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, cli.Usagef("--log-format %q: want %s", format, strings.Join(logFormats, " or "))
}

// log is the command's logger (set before any command runs; a discarding
// one before that).
func (g *globals) log() *slog.Logger {
	if g.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.logger
}
