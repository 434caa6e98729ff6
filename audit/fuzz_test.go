package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

// FuzzParse: whatever Parse accepts re-encodes to the very same bytes (one
// encoding per record).
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "frozen-export-ed25519", FileRecordsJSONL))
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n"))[:5] {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := Parse(line)
		if err != nil {
			return
		}
		again, err := r.Bytes()
		if err != nil {
			t.Fatalf("parsed record does not encode: %v", err)
		}
		if !bytes.Equal(again, line) {
			t.Fatalf("non-canonical input accepted:\n in %q\nout %q", line, again)
		}
	})
}

// FuzzVerifyExport feeds arbitrary record and checkpoint files to the
// offline verifier: it must never panic, and anything it accepts must be
// fully covered by a checkpoint signed with the given key.
func FuzzVerifyExport(f *testing.F) {
	dir := filepath.Join("testdata", "frozen-export-ed25519")
	recs, err := os.ReadFile(filepath.Join(dir, FileRecordsJSONL))
	if err != nil {
		f.Fatal(err)
	}
	cps, _ := os.ReadFile(filepath.Join(dir, FileCheckpoints))
	cp, _ := os.ReadFile(filepath.Join(dir, FileCheckpoint))
	pubPEM, _ := os.ReadFile(filepath.Join("testdata", "test-ed25519.pub.pem"))
	pub, err := ParsePublicKeyPEM(pubPEM)
	if err != nil {
		f.Fatal(err)
	}
	lines := bytes.SplitAfter(recs, []byte("\n"))
	f.Add(recs, cps, cp, false)
	f.Add(bytes.Join(lines[:20], nil), cps, cp, false)
	f.Add(recs[:len(recs)-1], cps, cp, true)
	f.Add([]byte{}, []byte("{\"size\":0,\"note\":\"x\"}\n"), []byte{}, false)
	csvDir := filepath.Join("testdata", "frozen-export-p256-csv") // parses; another key
	csvRecs, _ := os.ReadFile(filepath.Join(csvDir, FileRecordsCSV))
	csvCps, _ := os.ReadFile(filepath.Join(csvDir, FileCheckpoints))
	f.Add(csvRecs, csvCps, cp, true)
	f.Fuzz(func(t *testing.T, records, checkpoints, checkpoint []byte, csv bool) {
		name := FileRecordsJSONL
		if csv {
			name = FileRecordsCSV
		}
		fsys := fstest.MapFS{
			name:            {Data: records},
			FileCheckpoints: {Data: checkpoints},
			FileCheckpoint:  {Data: checkpoint},
		}
		rep, err := VerifyExportFS(fsys, pub, nil)
		if err != nil {
			return
		}
		if rep.Latest == nil || rep.Records != rep.Latest.Size || rep.Unsigned != 0 {
			t.Fatalf("accepted an export not covered by a checkpoint: %+v", rep)
		}
	})
}

// FuzzVerifyProof: the proof reader never panics.
func FuzzVerifyProof(f *testing.F) {
	proof, err := os.ReadFile(filepath.Join("testdata", "frozen-export-ed25519.proof.json"))
	if err != nil {
		f.Fatal(err)
	}
	pubPEM, _ := os.ReadFile(filepath.Join("testdata", "test-ed25519.pub.pem"))
	pub, _ := ParsePublicKeyPEM(pubPEM)
	f.Add(proof)
	f.Fuzz(func(t *testing.T, data []byte) {
		VerifyProof(data, pub)
	})
}
