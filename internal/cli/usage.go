package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// UsageError marks a command-line mistake (exit 2): an unknown command, a
// flag that does not parse, a wrong number of arguments, a missing or bad
// option.
type UsageError struct{ err error }

func (e UsageError) Error() string { return e.err.Error() }
func (e UsageError) Unwrap() error { return e.err }

// Usage marks err as a command-line mistake.
func Usage(err error) error { return UsageError{err} }

// Usagef is a command-line mistake with fmt.Errorf's message.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// IsUsage reports whether err is, or wraps, a command-line mistake.
func IsUsage(err error) bool { return errors.As(err, new(UsageError)) }

// NoArgs refuses positional arguments with a usage error.
func NoArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return Usagef("%s takes no arguments (got %q)", c.CommandPath(), args)
	}
	return nil
}

// ExactArgs requires n positional arguments (a usage error otherwise).
func ExactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return Usagef("%s takes %d argument(s), got %d", c.CommandPath(), n, len(args))
		}
		return nil
	}
}

// UnknownCommand is the Args of a command with subcommands: an argument
// left over after cobra found the command is an unknown subcommand, a usage
// error naming the nearest subcommands.
func UnknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default, set only by its own check
	}
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	return UsageError{errors.New(msg)}
}
