package audit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestProofTamper edits a unit proof the ways someone handing it to an
// auditor could (a record's content, its sequence number, another unit's
// record slipped in, an inclusion hash, the checkpoint) and requires each
// to be refused as an integrity violation. The untouched proof verifies.
func TestProofTamper(t *testing.T) {
	l, db := newTestLog(t, testKey(1))
	addUnits(t, l, db, 0, 6)
	good, err := l.Proof("SN00003")
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.Proof("SN00004")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyProof(good, l.Public()); err != nil {
		t.Fatalf("the untouched proof: %v", err)
	}
	parse := func(b []byte) UnitProof {
		var p UnitProof
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		edit func(p *UnitProof)
		want string
	}{
		{"a record's content edited", func(p *UnitProof) {
			p.Records[2].Record = strings.Replace(p.Records[2].Record, `"step":2`, `"step":9`, 1)
		}, "inclusion proof does not lead"},
		{"a record's sequence number changed", func(p *UnitProof) { p.Records[1].Seq++ }, "sequence number"},
		{"another unit's record slipped in", func(p *UnitProof) {
			p.Records = append(p.Records, parse(other).Records[0])
		}, "not \"SN00003\""},
		{"an inclusion hash flipped", func(p *UnitProof) { p.Records[0].Proof[0][3] ^= 1 }, "inclusion proof does not lead"},
		{"the checkpoint edited", func(p *UnitProof) {
			p.Checkpoint = strings.Replace(p.Checkpoint, "\n42\n", "\n43\n", 1)
		}, "proof checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := parse(good)
			before, _ := json.Marshal(p)
			tc.edit(&p)
			after, _ := json.Marshal(p)
			if string(before) == string(after) {
				t.Fatal("the edit changed nothing: the test proves nothing")
			}
			_, err := VerifyProof(after, l.Public())
			if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyProof = %v, want an integrity violation saying %q", err, tc.want)
			}
		})
	}
}
