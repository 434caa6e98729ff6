package ui

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestModelEvents feeds a batch's events out of order and reads the
// screen: rows for units in flight, a progress count, and a summary in the
// batch's order with the failed unit's step and hint.
func TestModelEvents(t *testing.T) {
	m := NewModel(Options{Command: "provision", Batch: true, Total: 3, Order: []string{"A", "B", "C"}, Resume: "station provision --batch t.csv"})
	for _, msg := range []any{
		UnitStarted{"C", "swtpm://h:3"}, UnitStarted{"A", "swtpm://h:1"},
		StepStarted{"C", "ek"}, StepDone{"C", "ek", time.Millisecond, nil}, StepStarted{"C", "flash"},
		StepStarted{"A", "srk"},
	} {
		m.Update(msg)
	}
	live := plain(m.Live())
	for _, want := range []string{"0/3 done", "C ", "flash", "A ", "srk", "swtpm://h:1"} {
		if !strings.Contains(live, want) {
			t.Errorf("live view lacks %q:\n%s", want, live)
		}
	}
	m.Update(StepDone{"C", "flash", time.Second, errors.New("tool failed")})
	m.Update(UnitDone{Outcome{Serial: "C", Verdict: Fail, Step: "flash", Hint: "check the flash target", Elapsed: time.Second}})
	m.Update(UnitDone{Outcome{Serial: "A", Verdict: Interrupted, Step: "srk", Hint: "interrupted: re-run"}})
	m.Update(UnitDone{Outcome{Serial: "B", Verdict: NotStarted, Hint: "not started"}})
	if live := plain(m.Live()); !strings.Contains(live, "3/3 done · 1 failed · 2 interrupted") {
		t.Errorf("progress after three outcomes:\n%s", live)
	}
	final := plain(m.Final())
	a, b, c := strings.Index(final, "│ A "), strings.Index(final, "│ B "), strings.Index(final, "│ C ")
	if a < 0 || b < a || c < b {
		t.Errorf("summary not in the batch's order (A %d, B %d, C %d):\n%s", a, b, c, final)
	}
	for _, want := range []string{"check the flash target", "0 passed, 1 failed, 1 interrupted, 1 not started", "units/hour", "A journaled where they stopped", "station provision --batch t.csv"} {
		if !strings.Contains(final, want) {
			t.Errorf("summary lacks %q:\n%s", want, final)
		}
	}
}

var sgr = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// plain drops the colours (the screen's only escape sequences in a view).
func plain(s string) string { return sgr.ReplaceAllString(s, "") }

// TestModelSession: a session has no total: a running count with
// units/hour instead of a bar; a unit waits for a fixture, then runs with
// its steps on its row; the last unit's large verdict stays on the screen;
// a serial scanned again after it ended is a new attempt.
func TestModelSession(t *testing.T) {
	m := NewModel(Options{Command: "provision", Session: true})
	m.Update(UnitStarted{"S-1", ""})
	if live := plain(m.Live()); !strings.Contains(live, "waiting") || !strings.Contains(live, "0 done · 0 failed · 0 units/hour") || strings.Contains(live, "ETA") {
		t.Errorf("a unit waiting in a session:\n%s", live)
	}
	m.Update(UnitStarted{"S-1", "f1"})
	m.Update(StepStarted{"S-1", "ek"})
	m.Update(StepDone{"S-1", "ek", time.Millisecond, nil})
	m.Update(StepStarted{"S-1", "srk"})
	if live := plain(m.Live()); !regexp.MustCompile(`S-1 +srk .* f1 +✓ ek · unit`).MatchString(live) {
		t.Errorf("the unit's row:\n%s", live)
	}
	m.Update(UnitDone{Outcome{Serial: "S-1", Verdict: Fail, Step: "srk", Hint: "do this"}})
	live := plain(m.Live())
	if !strings.Contains(live, "█") || !strings.Contains(live, "FAIL  S-1  at step srk") || !strings.Contains(live, "→ do this") || !strings.Contains(live, "1 done · 1 failed") {
		t.Errorf("the last verdict:\n%s", live)
	}
	m.Update(UnitStarted{"S-1", ""}) // scanned again
	m.Update(UnitStarted{"S-1", "f1"})
	if live := plain(m.Live()); !regexp.MustCompile(`S-1 +starting`).MatchString(live) {
		t.Errorf("the second attempt is not running:\n%s", live)
	}
	m.Update(UnitDone{Outcome{Serial: "S-1", Verdict: Pass, Detail: "registration ID x"}})
	// The summary has each unit once, as it ended last.
	if final := plain(m.Final()); !strings.Contains(final, "1 passed, 0 failed") || strings.Count(final, "│ S-1 ") != 1 {
		t.Errorf("summary:\n%s", final)
	}
}
