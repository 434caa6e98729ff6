package station

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/store"
)

// ErrBadScan means a line from the scanner is not SERIAL[,FIXTURE] with a
// valid serial and a fixture of line.fixtures (exit 2; the session goes on).
var ErrBadScan = hint.Wrap(errors.New("unusable scan"),
	"scan the unit's label again: a line is SERIAL or SERIAL,FIXTURE (FIXTURE: a name or TPM address from line.fixtures)")

// errNotStarted is the outcome of a unit scanned but not started when the
// session stopped.
var errNotStarted = errors.New("not started: the session stopped before a fixture was free; scan it again")

// Scan is one line the barcode scanner typed.
type Scan struct {
	Line    int    // 1-based line number on the input
	Serial  string // the unit's serial
	Fixture string // the fixture asked for ("" for the next free one)
}

// LineUnit is the outcome of one scanned line.
type LineUnit struct {
	Scan    Scan
	Fixture configs.Fixture // zero when the line never reached a fixture
	Result  *Result
	Err     error
	// Stopped is set for a unit the session's stop interrupted (journaled,
	// resumable) or never started: it needs another run.
	Stopped bool
}

// LineOptions configure a shift-long session.
type LineOptions struct {
	Fixtures  []configs.Fixture // at least one; each runs one unit at a time
	FlashSpec string            // overrides each fixture's flash targets and flash.target
	Force     bool              // overwrite a flash target holding another unit's bundle
	// Observer, when set, hears each unit's steps (called from the
	// goroutines running the units: it must be safe for concurrent use).
	Observer Observer
	// Scanned, when set, is called as each non-blank line is read, before
	// it is checked; Started as a unit goes on fixture f. Both are called
	// from RunLine's goroutine.
	Scanned func(Scan)
	Started func(f configs.Fixture, serial string)
}

// RunLine runs a shift: it reads SERIAL[,FIXTURE] lines from scans and
// provisions each unit on a free fixture (the one named, else the first
// free) while the next line is read, with as many units at once as there are
// fixtures. done is called once per non-blank line, in the order units
// finish, from one goroutine.
//
// Each unit gets what `station provision` gives it (the same Provision,
// journal and audit); before each, the audit log is checked as a new
// process would at start. A serial already provisioned is reported as such
// without touching a fixture; one scanned while it is still on a fixture
// waits for that run, then is reported as it ended. A bad line is reported
// (ErrBadScan) and the session goes on.
//
// The session ends at the end of scans, or when ctx is done: no new unit
// starts, the units on fixtures stop at their next step boundary (the
// step in progress finishes and is journaled, so the unit is resumable),
// and each is reported with Stopped set. It returns the audit log's error if
// that check fails (the session stops: nothing more is signed).
func (p *Provisioner) RunLine(ctx context.Context, scans io.Reader, o LineOptions, done func(LineUnit)) error {
	if len(o.Fixtures) == 0 {
		return errors.New("station line needs at least one fixture")
	}
	lines, quit := make(chan Scan), make(chan struct{})
	defer close(quit)
	go readScans(scans, lines, quit)

	type finished struct {
		idx int
		u   LineUnit
	}
	fin := make(chan finished)
	busy := make([]string, len(o.Fixtures)) // the serial on each fixture
	inflight := 0
	var pending *Scan
	eof, stopping := false, false
	var fatal error

	free := func() int {
		for i, s := range busy {
			if s == "" {
				return i
			}
		}
		return -1
	}
	onFixture := func(serial string) bool {
		for _, s := range busy {
			if s == serial {
				return true
			}
		}
		return false
	}
	start := func(i int, sc Scan) {
		f := o.Fixtures[i]
		busy[i] = sc.Serial
		inflight++
		flashSpec := o.FlashSpec
		if flashSpec == "" {
			flashSpec = f.Flash
		}
		req := Request{Serial: sc.Serial, TPMAddr: f.TPM, FlashSpec: flashSpec, Force: o.Force, Observer: o.Observer}
		if o.Started != nil {
			o.Started(f, sc.Serial)
		}
		go func() {
			res, err := p.Provision(ctx, req)
			fin <- finished{i, LineUnit{Scan: sc, Fixture: f, Result: res, Err: err}}
		}()
	}
	// place starts pending if it can, or settles it without a fixture.
	place := func() {
		sc := *pending
		if onFixture(sc.Serial) {
			return // the same unit is still running: wait for it
		}
		i := free()
		if sc.Fixture != "" {
			i = fixtureIndex(o.Fixtures, sc.Fixture)
			if busy[i] != "" {
				return
			}
		}
		if i < 0 {
			return
		}
		pending = nil
		status, regID, err := p.Recorded(sc.Serial)
		if err == nil && status == store.StatusProvisioned {
			done(LineUnit{Scan: sc, Result: &Result{Serial: sc.Serial, RegistrationID: regID, Result: ResultAlready, StepsMs: map[string]float64{}}})
			return
		}
		if err == nil {
			err = p.env.Log.Check()
			if err != nil {
				fatal = err
			}
		}
		if err != nil {
			done(LineUnit{Scan: sc, Result: failed(sc.Serial, err), Err: err})
			return
		}
		start(i, sc)
	}
	for fatal == nil {
		if pending != nil && !stopping {
			place()
			if pending == nil {
				continue
			}
		}
		if inflight == 0 && (stopping || (eof && pending == nil)) {
			break
		}
		var in <-chan Scan
		if pending == nil && !eof && !stopping && free() >= 0 {
			in = lines
		}
		var stop <-chan struct{}
		if !stopping {
			stop = ctx.Done()
		}
		select {
		case sc, ok := <-in:
			if !ok {
				eof = true
				continue
			}
			if o.Scanned != nil {
				o.Scanned(sc)
			}
			if err := checkScan(&sc, o.Fixtures); err != nil {
				done(LineUnit{Scan: sc, Result: failed(sc.Serial, err), Err: err})
				continue
			}
			pending = &sc
		case f := <-fin:
			busy[f.idx] = ""
			inflight--
			f.u.Stopped = stopping && f.u.Err != nil
			done(f.u)
		case <-stop:
			stopping = true
		}
	}
	for inflight > 0 { // a fatal error: let the running units end
		f := <-fin
		busy[f.idx] = ""
		inflight--
		done(f.u)
	}
	if pending != nil {
		done(LineUnit{Scan: *pending, Result: failed(pending.Serial, errNotStarted), Err: errNotStarted, Stopped: true})
	}
	return fatal
}

func failed(serial string, err error) *Result {
	return &Result{Serial: serial, Result: ResultFail, Error: err.Error(), StepsMs: map[string]float64{}}
}

// readScans sends each non-blank line of r (a trailing CR, as some
// scanners send, is dropped) and closes out at the end of r; it gives up
// when quit is closed.
func readScans(r io.Reader, out chan<- Scan, quit <-chan struct{}) {
	defer close(out)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		serial, fixture, _ := strings.Cut(line, ",")
		select {
		case out <- Scan{Line: n, Serial: strings.TrimSpace(serial), Fixture: strings.TrimSpace(fixture)}:
		case <-quit:
			return
		}
	}
}

// checkScan validates a scanned line: a valid serial, and a fixture of the
// list when one is named.
func checkScan(sc *Scan, fixtures []configs.Fixture) error {
	if err := ValidateSerial(sc.Serial); err != nil {
		return fmt.Errorf("%w: line %d: %w", ErrBadScan, sc.Line, err)
	}
	if strings.Contains(sc.Fixture, ",") {
		return fmt.Errorf("%w: line %d: more than SERIAL,FIXTURE", ErrBadScan, sc.Line)
	}
	if sc.Fixture != "" && fixtureIndex(fixtures, sc.Fixture) < 0 {
		var names []string
		for _, f := range fixtures {
			names = append(names, f.Name)
		}
		return fmt.Errorf("%w: line %d: no fixture %q (the fixtures: %s)", ErrBadScan, sc.Line, sc.Fixture, strings.Join(names, ", "))
	}
	return nil
}

// fixtureIndex finds a fixture by name or TPM address (-1: none).
func fixtureIndex(fixtures []configs.Fixture, s string) int {
	for i, f := range fixtures {
		if f.Name == s || f.TPM == s {
			return i
		}
	}
	return -1
}
