package cmd

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/station"
)

type auditVerifyOptions struct {
	export string
	key    string
	anchor string
	proof  string

	anchorFrom string // where a default anchor came from
}

// newAuditVerifyCommand is `station audit verify [--export DIR --key PUB.pem]
// [--anchor CHECKPOINT]` and `station audit verify --proof FILE --key PUB.pem`.
func newAuditVerifyCommand(g *globals) *cobra.Command {
	o := &auditVerifyOptions{}
	c := &cobra.Command{
		Use:   "verify [--export DIR --key PUB.pem] [--anchor CHECKPOINT] | --proof FILE --key PUB.pem",
		Short: "Check the audit log, an export or a unit proof end to end",
		Long: "Recomputes the hash chain, the Merkle tree and every checkpoint signature, and reports the\n" +
			"first bad record's sequence number (exit 4). Without --export it checks the station's\n" +
			"database (with the station key, or --key). With --export DIR --key PUB.pem it checks an\n" +
			"export offline, trusting only that key. --anchor takes a checkpoint kept from earlier and\n" +
			"proves the log still extends it (catches truncation, rollback and rewritten history): a\n" +
			"checkpoint file, an earlier export folder, a witness folder (station.witness) or a unit\n" +
			"proof file. Checking the database, the configured witness folder is an anchor by default.\n" +
			"--proof FILE --key PUB.pem checks a unit proof from station audit proof.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			switch {
			case o.export != "" && o.proof != "":
				return cli.Usagef("--export and --proof are exclusive")
			case (o.export != "" || o.proof != "") && o.key == "":
				return cli.Usagef("--key PUB.pem is required offline: the verifier trusts only the key you give it, never one shipped with the data")
			case o.proof != "" && o.anchor != "":
				return cli.Usagef("--anchor applies to a log or an export, not to a proof")
			}
			var pub crypto.PublicKey
			if o.key != "" {
				var err error
				if pub, err = cli.ReadKey("--key", o.key, audit.ParsePublicKeyPEM); err != nil {
					return err
				}
			}
			var anchor []byte
			if o.anchor != "" {
				var err error
				id := "" // picks the station's file in a shared witness folder
				if cfg, err := g.config(); err == nil && o.export == "" {
					id = cfg.Station.ID
				}
				if anchor, err = audit.ReadAnchor(o.anchor, id); err != nil {
					return cli.Usagef("--anchor: %v", err)
				}
			}
			if o.proof != "" {
				return verifyProof(c, g, o.proof, pub)
			}
			var rep *audit.Report
			var err error
			if o.export != "" {
				rep, err = audit.VerifyExport(o.export, pub, anchor)
			} else {
				rep, err = verifyDB(c, g, o, pub, anchor)
			}
			if err != nil {
				writeVerifyFailure(c, g, err)
				return fmt.Errorf("audit verify: %w", err)
			}
			for _, w := range rep.Warnings {
				fmt.Fprintf(c.ErrOrStderr(), "warning: %s\n", w)
			}
			if g.json() {
				return cli.WriteJSON(c.OutOrStdout(), auditVerifyJSON{Verified: true, Report: rep})
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "audit trail of %s verified: %d records, %d checkpoints signed by key %s\n", rep.Origin, rep.Records, rep.Checkpoints, rep.KeyID)
			if rep.Latest != nil {
				fmt.Fprintf(w, "latest checkpoint: size %d, root %s\n", rep.Latest.Size, rep.Latest.Root)
			}
			if rep.Anchor != nil {
				fmt.Fprintf(w, "the log extends the anchor checkpoint (size %d)%s\n", rep.Anchor.Size, o.anchorFrom)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.export, "export", "", "verify an export folder offline (with --key)")
	f.StringVar(&o.key, "key", "", "the station public key (PEM) you trust")
	f.StringVar(&o.anchor, "anchor", "", "an earlier signed checkpoint the log must extend")
	f.StringVar(&o.proof, "proof", "", "verify a unit proof file offline (with --key)")
	return c
}

func verifyDB(c *cobra.Command, g *globals, o *auditVerifyOptions, pub crypto.PublicKey, anchor []byte) (*audit.Report, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	if w := cfg.Station.Witness; anchor == nil && w != "" {
		// The witness folder is the anchor unless one is given: a
		// database rolled back or rewritten behind it fails here.
		path := audit.WitnessFile(cfg.Path(w), cfg.Station.ID)
		switch data, err := os.ReadFile(path); {
		case err == nil:
			anchor, o.anchorFrom = data, " kept in the witness "+path
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%w: %v", audit.ErrWitness, err)
		}
	}
	if pub == nil {
		if pub, err = station.LoadSigningKey(cfg); err != nil {
			return nil, err
		}
	}
	db, err := g.openDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var rep *audit.Report
	err = db.Guard(func() (err error) {
		rep, err = audit.Verify(db, pub, anchor)
		return err
	})
	return rep, err
}

func verifyProof(c *cobra.Command, g *globals, path string, pub crypto.PublicKey) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return cli.Usagef("--proof: %v", err)
	}
	rep, err := audit.VerifyProof(data, pub)
	if err != nil {
		writeVerifyFailure(c, g, err)
		return fmt.Errorf("audit verify --proof: %w", err)
	}
	if g.json() {
		return cli.WriteJSON(c.OutOrStdout(), struct {
			Verified bool `json:"verified"`
			*audit.ProofReport
			outcome
		}{true, rep, outcome{}})
	}
	fmt.Fprintf(c.OutOrStdout(), "proof verified: %d records of unit %s are in %s's checkpoint of size %d\n",
		len(rep.Records), rep.Serial, rep.Checkpoint.Origin, rep.Checkpoint.Size)
	for _, r := range rep.Records {
		fmt.Fprintf(c.OutOrStdout(), "  %d  %s  %s\n", r.Seq, r.Time.Format("2006-01-02T15:04:05Z"), r.Event)
	}
	return nil
}

// writeVerifyFailure gives -o json callers the failure as a document too
// (the error still goes to stderr and sets the exit code).
func writeVerifyFailure(c *cobra.Command, g *globals, err error) {
	var ve *audit.VerifyError
	if g.json() && errors.As(err, &ve) {
		o := outcomeOf(err)
		cli.WriteJSON(c.OutOrStdout(), map[string]any{"verified": false, "seq": ve.Seq, "reason": ve.Reason, "exit_code": o.ExitCode, "hint": o.Hint})
	}
}

// auditVerifyJSON is `station audit verify -o json` when the trail
// verifies.
type auditVerifyJSON struct {
	Verified bool `json:"verified"`
	*audit.Report
	outcome
}
