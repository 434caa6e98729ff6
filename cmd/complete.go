package cmd

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/store"
)

// completionDBTimeout bounds the wait for a database another process has
// open for writing: a shell's Tab must not hang behind a running batch.
const completionDBTimeout = 300 * time.Millisecond

// registerCompletions makes `station completion`'s scripts complete flag
// values, not only flag names: the fixed sets (output and log formats,
// export formats, unit statuses) and the serials the station database
// knows. It walks the tree, so a new command with a --serial flag completes
// serials without being listed here.
func registerCompletions(root *cobra.Command, g *globals) {
	fixed := map[string][]string{ // "command path --flag": its values
		"station --output":               outputFormats,
		"station --log-format":           logFormats,
		"station enroll export --format": enroll.Formats,
		"station audit export --format":  auditFormats,
		"station units list --status":    unitStatuses,
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if vs, ok := fixed[c.CommandPath()+" --"+f.Name]; ok {
				mustRegister(c, f.Name, values(vs))
			} else if f.Name == "serial" && c.CommandPath() != "station ca issue-leaf" {
				mustRegister(c, f.Name, g.completeSerials)
			}
		})
		if c.CommandPath() == "station units show" {
			c.ValidArgsFunction = func(c *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return g.completeSerials(c, args, prefix)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func mustRegister(c *cobra.Command, flag string, f cobra.CompletionFunc) {
	if err := c.RegisterFlagCompletionFunc(flag, f); err != nil {
		panic(err) // a flag registered twice: a bug in this file
	}
}

// values completes one of a fixed set.
func values(vs []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, v := range vs {
			if strings.HasPrefix(v, prefix) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeSerials offers the serials in the station database (the one
// --config, --db and the environment name), opened read-only. No config,
// no database or a database locked by a writer: no suggestions, no error.
func (g *globals) completeSerials(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	none := cobra.ShellCompDirectiveNoFileComp
	cfg, err := g.config()
	if err != nil {
		return nil, none
	}
	db, err := store.Open(cfg.Station.DB, store.Options{StationID: cfg.Station.ID, ReadOnly: true, Timeout: completionDBTimeout})
	if err != nil {
		return nil, none
	}
	defer db.Close()
	units, err := db.Units(func(u *store.Unit) bool { return strings.HasPrefix(u.Serial, prefix) })
	if err != nil {
		return nil, none
	}
	out := make([]string, 0, len(units))
	for _, u := range units {
		out = append(out, u.Serial)
	}
	return out, none
}
