package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/agent"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

type agentOptions struct {
	socket string
	idle   time.Duration
}

// newAgentCommand is `station agent`: the line key unlocked once, serving
// provision processes over a Unix socket.
func newAgentCommand(g *globals) *cobra.Command {
	o := &agentOptions{}
	c := &cobra.Command{
		Use:   "agent [--socket PATH] [--idle-timeout D]",
		Short: "Hold the unlocked line key for a shift and issue device certificates to provision over a Unix socket",
		Long: `Opens the line intermediate's key (pki.issuer_key) once, asking for its password on the
terminal unless STATION_PKI_KEY_PASSWORD is set, and serves provision processes of the same user
over a Unix socket until SIGTERM or Ctrl-C (or --idle-timeout without a request), then removes
the socket. A test executive that runs station provision once per unit then pays the unlock once.

Provision uses the agent when STATION_AGENT_SOCK (config key agent.sock) names its socket; it
then needs no password, and never sees the key. The agent signs nothing but device certificates
under the issuance policy, with the validity, warehouse period, SAN template and ceiling of its
own config (provision refuses an agent whose config differs); see the agent package's doc.

The socket is --socket, else agent.sock, else a new private folder under $TMPDIR; it is 0600 in a
folder that must be 0700 and the user's own, and only processes of the same uid are served
(SO_PEERCRED). The socket's path is printed first:
  STATION_AGENT_SOCK=PATH; export STATION_AGENT_SOCK
(-o json: {"socket","pid","issuer"}). One line per request goes to stderr.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.run(g, c) },
	}
	f := c.Flags()
	f.StringVar(&o.socket, "socket", "", "the socket to listen on (overrides agent.sock)")
	f.DurationVar(&o.idle, "idle-timeout", 0, "stop after this long without a request (0: only on SIGTERM or Ctrl-C)")
	return c
}

func (o *agentOptions) run(g *globals, c *cobra.Command) error {
	if o.idle < 0 {
		return cli.Usagef("--idle-timeout must not be negative")
	}
	cfg, err := g.config()
	if err != nil {
		return err
	}
	if err := cfg.CheckFiles([]configs.FileKey{configs.KeyIssuerCert, configs.KeyIssuerKey, configs.KeyRoot}, []configs.FileKey{configs.KeyChain}); err != nil {
		return err
	}
	path, made := o.socket, ""
	if path == "" && cfg.Agent.Sock != "" {
		path = cfg.Path(cfg.Agent.Sock)
	}
	if path == "" {
		if made, err = os.MkdirTemp("", "station-agent-"); err != nil {
			return err
		}
		defer os.RemoveAll(made)
		path = filepath.Join(made, "agent.sock")
	}
	pw := newPasswords(c, g)
	password, err := pw.lineKey(cfg)
	pw.close()
	if err != nil {
		return err
	}
	is, err := station.OpenLineIssuer(cfg, password)
	if err != nil {
		return err
	}
	defer is.Close()
	ln, err := agent.Listen(path)
	if err != nil {
		return err
	}
	sctx, stop := signal.NotifyContext(ctx(c), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if g.json() {
		cli.WriteJSON(c.OutOrStdout(), map[string]any{"socket": path, "pid": os.Getpid(), "issuer": is.Cert.Subject.CommonName})
	} else {
		fmt.Fprintf(c.OutOrStdout(), "STATION_AGENT_SOCK=%s; export STATION_AGENT_SOCK\n", path)
	}
	errw := c.ErrOrStderr()
	fmt.Fprintf(errw, "station agent: pid %d serving %q at %s; stop with Ctrl-C or SIGTERM\n", os.Getpid(), is.Cert.Subject.CommonName, path)
	// One record per request whatever --verbose says: the agent's log is
	// what it is run for (--log-format json for a collector).
	log, err := newLogger(errw, g.logFormat, true)
	if err != nil {
		return err
	}
	srv := &agent.Server{Issuer: is, Policy: station.AgentPolicy(cfg), IdleTimeout: o.idle, Log: log}
	err = srv.Serve(sctx, ln)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(errw, "station agent: %v; socket %s removed\n", err, path)
		return nil // an idle timeout is the end asked for
	}
	fmt.Fprintf(errw, "station agent: stopped; socket %s removed\n", path)
	return nil
}

// lineKey returns the password func for pki.issuer_key: nil when the key is
// not an encrypted PEM; else $STATION_PKI_KEY_PASSWORD, or asked now on the
// terminal (echo off). The password is never printed.
func (p *passwords) lineKey(cfg *configs.Config) (func() ([]byte, error), error) {
	ref := cfg.PKI.IssuerKey
	if !configs.IsURI(ref) {
		ref = cfg.Path(ref)
	}
	if !certgen.NeedsPassword(ref) {
		return nil, nil
	}
	pw := []byte(p.g.getenv(configs.EnvPKIKeyPassword))
	if len(pw) == 0 {
		var err error
		pw, err = p.ask("Password of the line key ("+ref+"): ",
			cli.Usagef("the line key %s is encrypted: set %s (or run on a terminal to be asked)", ref, configs.EnvPKIKeyPassword))
		if err != nil {
			return nil, err
		}
	}
	return func() ([]byte, error) { return append([]byte(nil), pw...), nil }, nil
}
