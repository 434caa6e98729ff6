package station

import "time"

// Observer hears a unit's run as it happens: the steps of provision, the
// checks of verify, and what a run clears first. A live screen and
// --verbose logging are observers; station knows nothing of terminals.
// The methods are called on the goroutine running the unit, so one
// observer shared by parallel fixtures must be safe for concurrent use.
type Observer interface {
	// StepStarted: step (or check) is about to run on the unit.
	StepStarted(serial, step string)
	// StepDone: step finished after d; err is why it failed (nil: done).
	StepDone(serial, step string, d time.Duration, err error)
	// Note: something the run did besides its steps ("flushed 2 stale
	// transient handle(s)", a verify's leftover DPS test key removed).
	Note(serial, text string)
}

// ObserverFuncs is an Observer made of funcs; a nil func is skipped.
type ObserverFuncs struct {
	Started func(serial, step string)
	Done    func(serial, step string, d time.Duration, err error)
	Noted   func(serial, text string)
}

func (o ObserverFuncs) StepStarted(serial, step string) {
	if o.Started != nil {
		o.Started(serial, step)
	}
}

func (o ObserverFuncs) StepDone(serial, step string, d time.Duration, err error) {
	if o.Done != nil {
		o.Done(serial, step, d, err)
	}
}

func (o ObserverFuncs) Note(serial, text string) {
	if o.Noted != nil {
		o.Noted(serial, text)
	}
}

// observer returns o, or one that hears nothing.
func observer(o Observer) Observer {
	if o == nil {
		return ObserverFuncs{}
	}
	return o
}
