package station

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/store"
)

// Report is a shift's yield, read from the audit log and the database
// (station report). Units are counted by serial: a unit is attempted when a
// provisioning record names it in the window, passed when its last step
// (record, audited as provision.done) finished in the window, failed when
// an attempt failed in the window and none passed, and resumed when it
// passed after carrying on a journal (an attempt whose first step was not
// ek: after a failure, a crash or an interrupt). A unit whose only attempt
// is still running, or was killed, is attempted but neither passed nor
// failed. Failures by step and cause count failed attempts.
type Report struct {
	Station string    `json:"station"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`

	Attempted int `json:"units_attempted"`
	Passed    int `json:"units_passed"`
	Failed    int `json:"units_failed"`
	Resumed   int `json:"units_resumed"`
	// Attempts counts provision runs that ended (passed or failed) in the
	// window; FailedAttempts those that failed.
	Attempts       int `json:"attempts"`
	FailedAttempts int `json:"failed_attempts"`

	FailuresByStep  []Count      `json:"failures_by_step"`
	FailuresByCause []Count      `json:"failures_by_cause"`
	FailedUnits     []FailedUnit `json:"failed_units"`
	StepTimes       []StepTime   `json:"step_times"`

	// UnitsPerHour is the units passed per hour of the window (from From
	// to To, or to now when To is later).
	UnitsPerHour float64    `json:"units_per_hour"`
	Throughput   Throughput `json:"throughput"`
	Expiry       Expiry     `json:"certificate_expiry"`
}

// Count is how many failures had one step or one cause.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// FailedUnit is a unit whose last attempt in the window failed.
type FailedUnit struct {
	Serial string    `json:"serial"`
	Step   string    `json:"step"`
	Cause  string    `json:"cause"`
	Error  string    `json:"error"`
	At     time.Time `json:"at"`
}

// StepTime is the distribution of one step's duration over the steps that
// finished in the window (nearest-rank percentiles).
type StepTime struct {
	Step  string  `json:"step"`
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	MaxMs float64 `json:"max_ms"`
}

// Throughput is units passed and failed per period of the window: hours,
// or days for windows longer than two days.
type Throughput struct {
	PeriodHours int      `json:"period_hours"`
	Periods     []Period `json:"periods"`
}

// Period is one period of Throughput.
type Period struct {
	Start  time.Time `json:"start"`
	Passed int       `json:"passed"`
	Failed int       `json:"failed"`
}

// Expiry is when the certificates of the units passed in the window end.
type Expiry struct {
	Units    int         `json:"units"`
	Earliest time.Time   `json:"earliest,omitzero"`
	Latest   time.Time   `json:"latest,omitzero"`
	ByYear   []YearCount `json:"by_year"`
}

// YearCount is how many certificates end in one year.
type YearCount struct {
	Year  int `json:"year"`
	Count int `json:"count"`
}

// unitTally follows one serial through the window's records.
type unitTally struct {
	serial     string
	runOpen    bool // a run has started (a step record) and not ended
	resumedRun bool // the open run began after ek
	passed     bool
	resumed    bool
	lastFail   *FailedUnit
}

// MakeReport reads the records of [from, to) from the audit log and the
// passed units' certificates from the database.
func MakeReport(db *store.DB, stationID string, from, to, now time.Time) (*Report, error) {
	rep := &Report{Station: stationID, From: from.UTC(), To: to.UTC(), FailuresByStep: []Count{}, FailuresByCause: []Count{},
		FailedUnits: []FailedUnit{}, StepTimes: []StepTime{}}
	tallies := map[string]*unitTally{}
	var order []*unitTally
	stepMs := map[string][]float64{}
	byStep, byCause := map[string]int{}, map[string]int{}
	period := time.Hour
	if to.Sub(from) > 48*time.Hour {
		period = 24 * time.Hour
	}
	start := from.Truncate(period)
	rep.Throughput.PeriodHours = int(period / time.Hour)
	for t := start; t.Before(to); t = t.Add(period) {
		rep.Throughput.Periods = append(rep.Throughput.Periods, Period{Start: t.UTC()})
	}
	slot := func(t time.Time) *Period {
		i := int(t.Sub(start) / period)
		if i < 0 || i >= len(rep.Throughput.Periods) {
			return nil
		}
		return &rep.Throughput.Periods[i]
	}

	err := db.Guard(func() error {
		return audit.ForEachRecord(db, from, to, func(r *audit.Record) error {
			ev, ok := strings.CutPrefix(r.Event, "provision.")
			if !ok || r.Serial == "" {
				return nil
			}
			p := payloadOf(r)
			u := tallies[r.Serial]
			if u == nil {
				u = &unitTally{serial: r.Serial}
				tallies[r.Serial] = u
				order = append(order, u)
			}
			if ev == "failed" {
				rep.Attempts++
				rep.FailedAttempts++
				if p.Cause == "" {
					p.Cause = CauseUnclassified
				}
				byStep[p.Step]++
				byCause[p.Cause]++
				u.lastFail = &FailedUnit{Serial: r.Serial, Step: p.Step, Cause: p.Cause, Error: p.Error, At: r.Time.UTC()}
				u.runOpen, u.resumedRun = false, false
				if s := slot(r.Time); s != nil {
					s.Failed++
				}
				return nil
			}
			step := ev
			if ev == "done" {
				step = StepRecord
			}
			if !slices.Contains(Steps, step) {
				return nil // not a step of the timeline (a cleanup note)
			}
			if !u.runOpen {
				u.runOpen, u.resumedRun = true, step != StepEK
			}
			if p.hasMs {
				stepMs[step] = append(stepMs[step], p.Ms)
			}
			if step == StepRecord {
				rep.Attempts++
				u.passed = true
				u.resumed = u.resumed || u.resumedRun
				u.runOpen, u.resumedRun = false, false
				if s := slot(r.Time); s != nil {
					s.Passed++
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}

	rep.Attempted = len(order)
	var passed []string
	for _, u := range order {
		switch {
		case u.passed:
			rep.Passed++
			passed = append(passed, u.serial)
			if u.resumed {
				rep.Resumed++
			}
		case u.lastFail != nil:
			rep.Failed++
			rep.FailedUnits = append(rep.FailedUnits, *u.lastFail)
		}
	}
	for _, s := range Steps {
		if n := byStep[s]; n > 0 {
			rep.FailuresByStep = append(rep.FailuresByStep, Count{s, n})
			delete(byStep, s)
		}
	}
	for s, n := range byStep { // a step this version does not know
		rep.FailuresByStep = append(rep.FailuresByStep, Count{s, n})
	}
	for c, n := range byCause {
		rep.FailuresByCause = append(rep.FailuresByCause, Count{c, n})
	}
	sort.Slice(rep.FailuresByCause, func(i, j int) bool {
		a, b := rep.FailuresByCause[i], rep.FailuresByCause[j]
		return a.Count > b.Count || a.Count == b.Count && a.Name < b.Name
	})
	for _, s := range Steps {
		if ms := stepMs[s]; len(ms) > 0 {
			slices.Sort(ms)
			rep.StepTimes = append(rep.StepTimes, StepTime{Step: s, Count: len(ms), P50Ms: percentile(ms, 50), P95Ms: percentile(ms, 95), MaxMs: ms[len(ms)-1]})
		}
	}
	end := to
	if now.Before(end) {
		end = now
	}
	if h := end.Sub(from).Hours(); h > 0 {
		rep.UnitsPerHour = math.Round(float64(rep.Passed)/h*100) / 100
	}
	rep.Expiry, err = expiryOf(db, passed)
	return rep, err
}

// failurePayload is what a report reads of a provisioning record's
// payload; a field of another type (a record of another version) is
// ignored, never an error.
type failurePayload struct {
	Step, Cause, Error string
	Ms                 float64
	hasMs              bool
}

func payloadOf(r *audit.Record) failurePayload {
	var m map[string]any
	var p failurePayload
	if json.Unmarshal(r.Payload, &m) != nil {
		return p
	}
	p.Step, _ = m["step"].(string)
	p.Cause, _ = m["cause"].(string)
	p.Error, _ = m["error"].(string)
	p.Ms, p.hasMs = m["ms"].(float64)
	return p
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func expiryOf(db *store.DB, serials []string) (Expiry, error) {
	e := Expiry{ByYear: []YearCount{}}
	want := map[string]bool{}
	for _, s := range serials {
		want[s] = true
	}
	units, err := db.Units(func(u *store.Unit) bool { return want[u.Serial] && !u.NotAfter.IsZero() })
	if err != nil {
		return e, err
	}
	years := map[int]int{}
	for _, u := range units {
		na := u.NotAfter.UTC()
		if e.Units == 0 || na.Before(e.Earliest) {
			e.Earliest = na
		}
		if na.After(e.Latest) {
			e.Latest = na
		}
		e.Units++
		years[na.Year()]++
	}
	for y, n := range years {
		e.ByYear = append(e.ByYear, YearCount{y, n})
	}
	sort.Slice(e.ByYear, func(i, j int) bool { return e.ByYear[i].Year < e.ByYear[j].Year })
	return e, nil
}
