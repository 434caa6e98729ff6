// Package cmd holds station's cobra commands, one per file. Each command
// parses and validates its flags, then calls a library function; errors are
// turned into exit codes in one place (Exit).
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/station"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// globals are the flags every command shares.
type globals struct {
	version    string
	configPath string
	db         string
	output     string
	operator   string
	verbose    bool
	logFormat  string
	logger     *slog.Logger // see log.go
	// stdout is, with -o json, the command's stdout watched for whether it
	// printed anything (Run prints an error document when it did not).
	stdout *watchedWriter
	// env is the environment config overrides come from (os.Environ unless a
	// test sets it).
	env []string
}

// outputFormats are the values of --output.
var outputFormats = []string{"text", "json"}

// NewRootCommand builds the station command tree.
func NewRootCommand(version string) *cobra.Command {
	root, _ := newRoot(version)
	return root
}

// Run runs station with args (cmd/station's main): it returns the exit
// status, writes the error and its hint to stderr, and with -o json gives
// a command that fails before printing anything on stdout a document
// there too (docs/schemas/error.json), so an integrator reading stdout
// always gets one.
func Run(ctx context.Context, version string, args []string, stdout, stderr io.Writer) int {
	root, g := newRoot(version)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	code := Exit(err, stderr)
	if err != nil && g.json() && !errors.As(err, new(silentError)) && (g.stdout == nil || !g.stdout.wrote.Load()) {
		cli.WriteJSON(stdout, errorDocument{Error: err.Error(), outcome: outcome{code, hint.Of(err)}})
	}
	return code
}

func newRoot(version string) (*cobra.Command, *globals) {
	g := &globals{version: version}
	root := &cobra.Command{
		Use:           "station",
		Short:         "Give every unit on the line a TPM-rooted identity",
		Long:          "station runs the manufacturing timeline on each unit's TPM (EK, SRK, device key,\nownership, certificate, flash), records it in a signed audit log, and exports DPS enrollments.",
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			if !slices.Contains(outputFormats, g.output) {
				return cli.Usagef("--output %q: want %s", g.output, strings.Join(outputFormats, " or "))
			}
			if g.json() {
				g.stdout = &watchedWriter{w: c.OutOrStdout()}
				c.SetOut(g.stdout)
			}
			var err error
			if g.logger, err = newLogger(c.ErrOrStderr(), g.logFormat, g.verbose); err != nil {
				return err
			}
			// A misspelt STATION_* override is refused by every command,
			// not only those that load the config.
			return configs.CheckEnv(g.environ())
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.Usage(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "", "config file (default $STATION_CONFIG, else ./station.yaml)")
	pf.StringVar(&g.db, "db", "", "station database (overrides station.db)")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&g.operator, "operator", "", "who runs this command (overrides station.operator)")
	pf.BoolVar(&g.verbose, "verbose", false, "log each step to stderr (log level info; else warnings only)")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	// --version has no -v shorthand (cobra's default): -v is too easily
	// taken for --verbose.
	root.Flags().Bool("version", false, "print the version and commit")
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")

	// The top-level commands, each built by the constructor in its own
	// file (help lists them sorted by name).
	root.AddCommand(
		newInitCommand(g),
		newProvisionCommand(g),
		newVerifyCommand(g),
		newUnitsCommand(g),
		newRevokeCommand(g),
		newEnrollCommand(g),
		newAuditCommand(g),
		newCACommand(g),
		newEKCommand(g),
		newTPMCommand(g),
		newBackupCommand(g),
		newDoctorCommand(g),
		newReportCommand(g),
		newDemoCommand(g),
		newAgentCommand(g),
		newLineCommand(g),
		newDocsCommand(g),
	)
	root.SetHelpCommand(newHelpCommand())
	usageArgs(root, g.json)
	registerCompletions(root, g)
	return root, g
}

// config loads the configuration named by --config, $STATION_CONFIG or
// ./station.yaml, then applies --db and --operator.
func (g *globals) config() (*configs.Config, error) {
	env := g.environ()
	path, must := g.configSource()
	c, err := configs.Load(path, must, env)
	if err != nil {
		return nil, err
	}
	// The address's syntax belongs to tpmops (configs knows no TPM).
	if err := tpmops.CheckAddress(c.TPM.Address); err != nil {
		return nil, &configs.Error{Key: "tpm.address", Err: err}
	}
	for i, f := range c.LineFixtures() {
		if err := tpmops.CheckAddress(f.TPM); err != nil && len(c.Line.Fixtures) > 0 {
			return nil, &configs.Error{Key: fmt.Sprintf("line.fixtures[%d]", i), Err: err}
		}
	}
	if g.db != "" {
		c.Station.DB = g.db
	} else {
		c.Station.DB = c.Path(c.Station.DB)
	}
	if g.operator != "" {
		c.Station.Operator = g.operator
	}
	return c, nil
}

// configSource is the config file to read: --config, $STATION_CONFIG or
// ./station.yaml; must is false for the last (it may be absent).
func (g *globals) configSource() (path string, must bool) {
	if g.configPath != "" {
		return g.configPath, true
	}
	if p := lookup(g.environ(), configs.EnvConfig); p != "" {
		return p, true
	}
	return "station.yaml", false
}

// environ is the command's environment (os.Environ unless a test set one).
func (g *globals) environ() []string {
	if g.env != nil {
		return g.env
	}
	return os.Environ()
}

func (g *globals) json() bool { return g.output == "json" }

func lookup(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// getenv reads a variable from the command's environment.
func (g *globals) getenv(name string) string {
	if g.env != nil {
		return lookup(g.env, name)
	}
	return os.Getenv(name)
}

// ctx returns the command's context (cancelled on SIGINT/SIGTERM).
func ctx(c *cobra.Command) context.Context {
	if x := c.Context(); x != nil {
		return x
	}
	return context.Background()
}

// openDB opens the station database named by the config read-only (for
// commands that need neither the signing key nor a TPM).
func (g *globals) openDB() (*store.DB, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	return station.OpenDB(cfg, true)
}

// openEnv opens the station's database, audit log and signing key.
func (g *globals) openEnv() (*station.Env, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	return station.OpenEnv(cfg, g.version)
}

// newHelpCommand replaces cobra's help command, which shows the root's help
// and exits 0 for a topic it does not know: "station help nosuch" is a
// usage error (exit 2) naming the topic, as "station nosuch" is.
func newHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help shows the help of any command: station help [path to command].",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			parent, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, sub := range parent.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		Args: cobra.ArbitraryArgs, // checked below, against the tree
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := c.Root().Find(args)
			if err != nil {
				return cli.Usage(err)
			}
			if len(rest) > 0 {
				return cli.UnknownCommand(target, rest)
			}
			target.InitDefaultHelpFlag()
			target.InitDefaultVersionFlag()
			return target.Help()
		},
	}
}
