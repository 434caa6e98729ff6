package cmd

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/audittest"
	"github.com/factory-id/station/station"
	"github.com/factory-id/station/store"
)

func init() { scriptCommands["audit-fixture"] = auditFixtureMain }

// auditFixtureMain builds and damages audit logs for the scripts:
//
//	audit-fixture build CONFIG UNITS   key (if absent), database, UNITS units of 7 records
//	audit-fixture append CONFIG        one record
//	audit-fixture flip DB SEQ          flip a byte of record SEQ in the database
//	audit-fixture drop DB FROM         delete records FROM.. (the tree hashes and checkpoints stay)
//	audit-fixture forge DB SEQ         rewrite record SEQ's payload as a forger would: chain and tree hashes recomputed
//	audit-fixture drop-checkpoints DB FROM   delete the checkpoints for sizes FROM.. (0: all)
//	audit-fixture truncate DB SEQ      roll the log back to SEQ-1 records (records, hashes, checkpoints)
//	audit-fixture checkpoints DB       print the stored checkpoints (size and note), one per line
//	audit-fixture flip-line FILE LINE  flip a byte in line LINE (1-based) of a file
func auditFixtureMain() {
	if err := auditFixture(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "audit-fixture:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func auditFixture(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: audit-fixture build|append|flip|drop|flip-line ...")
	}
	switch args[0] {
	case "build", "append":
		cfg, err := configs.Load(args[1], true, nil)
		if err != nil {
			return err
		}
		if _, err := audit.GenerateKey(cfg.Path(cfg.Station.SigningKey)); err != nil {
			return err
		}
		signer, err := audit.LoadPrivateKey(cfg.Path(cfg.Station.SigningKey))
		if err != nil {
			return err
		}
		o := store.Options{StationID: cfg.Station.ID, Timeout: station.DBTimeout}
		open := store.Open
		if args[0] == "build" {
			open = func(path string, o store.Options) (*store.DB, error) { return store.Create(path, o, nil) }
		}
		db, err := open(cfg.Path(cfg.Station.DB), o)
		if err != nil {
			return err
		}
		defer db.Close()
		l, err := audit.Open(db.DB, cfg.Station.ID, "fixture", signer)
		if err != nil {
			return err
		}
		if args[0] == "append" {
			return db.Update(func(tx *bolt.Tx) error {
				_, err := l.Append(tx, audit.Event{Type: "startup", Operator: "fixture"})
				return err
			})
		}
		units, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		steps := []string{"provision.ek", "provision.srk", "provision.device-key", "provision.ownership", "provision.cert", "provision.flash", "provision.done"}
		for u := 1; u <= units; u++ {
			err := db.Update(func(tx *bolt.Tx) error {
				for i, s := range steps {
					if _, err := l.Append(tx, audit.Event{Serial: fmt.Sprintf("SN%04d", u), Type: s, Operator: "fixture", Payload: map[string]int{"step": i}}); err != nil {
						return err
					}
				}
				return nil // every record is signed as it is appended
			})
			if err != nil {
				return err
			}
		}
		return nil
	case "flip", "drop":
		n, err := strconv.ParseUint(args[2], 10, 64)
		if err != nil {
			return err
		}
		db, err := bolt.Open(args[1], 0o600, nil)
		if err != nil {
			return err
		}
		defer db.Close()
		return db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("audit.records"))
			key := func(s uint64) []byte {
				return []byte{byte(s >> 56), byte(s >> 48), byte(s >> 40), byte(s >> 32), byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}
			}
			if args[0] == "drop" {
				c := b.Cursor()
				for k, _ := c.Seek(key(n)); k != nil; k, _ = c.Next() {
					if err := c.Delete(); err != nil {
						return err
					}
				}
				return nil
			}
			v := bytes.Clone(b.Get(key(n)))
			if v == nil {
				return fmt.Errorf("no record %d", n)
			}
			v[len(v)/2] ^= 0x01
			return b.Put(key(n), v)
		})
	case "forge", "drop-checkpoints", "truncate", "checkpoints":
		db, err := bolt.Open(args[1], 0o600, &bolt.Options{Timeout: station.DBTimeout})
		if err != nil {
			return err
		}
		defer db.Close()
		if args[0] == "checkpoints" {
			cps, err := audittest.Checkpoints(db)
			if err != nil {
				return err
			}
			for _, size := range slices.Sorted(maps.Keys(cps)) {
				fmt.Printf("%d %q\n", size, cps[size])
			}
			return nil
		}
		if len(args) < 3 {
			return fmt.Errorf("usage: audit-fixture %s DB N", args[0])
		}
		n, err := strconv.ParseUint(args[2], 10, 64)
		if err != nil {
			return err
		}
		switch args[0] {
		case "forge":
			return audittest.Forge(db, n, func(r *audit.Record) { r.Payload = []byte(`{"forged":true}`) })
		case "drop-checkpoints":
			return audittest.DeleteCheckpoints(db, n)
		}
		return audittest.Truncate(db, n)
	case "flip-line":
		line, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		data, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		lines := bytes.SplitAfter(data, []byte("\n"))
		if line < 1 || line > len(lines) {
			return fmt.Errorf("no line %d", line)
		}
		l := lines[line-1]
		l[len(l)/2] ^= 0x01
		return os.WriteFile(args[1], bytes.Join(lines, nil), 0o644)
	}
	return fmt.Errorf("unknown fixture %q", args[0])
}
