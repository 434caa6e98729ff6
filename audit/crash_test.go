package audit

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
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
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$")
		cmd.Env = append(os.Environ(), "AUDIT_CRASH_CHILD="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The child says when its first unit committed; kill it some time
		// after, at a random instant.
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			t.Fatalf("child: %v", err)
		}
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()

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

func crashChild(path string) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	l, err := Open(db, "line1-st03", "crash-test", testKey(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
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
