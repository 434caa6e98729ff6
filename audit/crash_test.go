package audit

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/childtest"
)

// TestCrashSafety kills a process appending units (one durable transaction
// per unit: records, tree hashes, checkpoints) at random instants and checks
// that the log verifies after each kill, every record signed, and that
// appending resumes.
func TestCrashSafety(t *testing.T) {
	if path := os.Getenv("AUDIT_CRASH_CHILD"); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "station.db")
	var last uint64
	for round := 0; round < 6; round++ {
		// The child says when its first unit committed; kill it some time
		// after, at a random instant.
		child := childtest.Start(t, "TestCrashSafety", "AUDIT_CRASH_CHILD="+path)
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		child.Kill()

		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(db, testKey(1).Public(), nil)
		db.Close()
		if err != nil {
			t.Fatalf("round %d: log does not verify after kill: %v", round, err)
		}
		t.Logf("round %d: %d records, %d unsigned", round, rep.Records, rep.Unsigned)
		if rep.Unsigned != 0 || rep.Latest == nil || rep.Latest.Size != rep.Records {
			t.Fatalf("round %d: records not covered by a checkpoint after a kill: %+v", round, rep)
		}
		if round > 0 && rep.Records <= last {
			t.Errorf("round %d: no progress (%d records)", round, rep.Records)
		}
		last = rep.Records
	}
}

// childLog opens, in a child process, the database at path and its log
// (the test station, key 1, software version version), exiting 1 when it
// cannot.
func childLog(path, version string) (*bolt.DB, *Log) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l, err := Open(db, "line1-st03", version, testKey(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return db, l
}

func crashChild(path string) {
	db, l := childLog(path, "crash-test")
	for u := 0; ; u++ {
		// Even units commit in one transaction, odd units one transaction
		// per record (as provisioning journals steps).
		var err error
		for i := 0; i < len(unitSteps) && err == nil; {
			err = db.Update(func(tx *bolt.Tx) error {
				for ; i < len(unitSteps); i++ {
					if _, err := l.Append(tx, Event{Serial: fmt.Sprintf("C%d-%d", os.Getpid(), u), Type: unitSteps[i], Payload: map[string]int{"u": u}}); err != nil {
						return err
					}
					if u%2 == 1 {
						i++
						return nil
					}
				}
				return nil
			})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if u == 0 {
			fmt.Println("ready")
		}
	}
}
