// Package hint attaches the operator's next step to an error: the one hint
// type of every station package. cmd prints the hint under the error
// ("hint: ..."); a JSON report carries it as "hint".
//
// Which hint wins when errors wrap errors: the most specific cause's, that
// is the hint found deepest in the chain, because the layer that met the
// condition knows best what fixes it. A layer that knows better for its own
// context (provision's "re-run provision for this unit: it resumes" over
// tpmops' generic "retry") says so with Override; the outermost override
// wins. A hint given with Wrap or New is a default: any hint beneath it
// replaces it.
//
// Hints never change what an error says (Error) or what it is (errors.Is
// and errors.As see through them).
package hint

import "errors"

// Error is an error with the operator's next step.
type Error struct {
	err      error
	hint     string
	override bool
}

func (e *Error) Error() string { return e.err.Error() }
func (e *Error) Unwrap() error { return e.err }

// New returns a sentinel error with text msg whose hint is h.
func New(msg, h string) error { return &Error{err: errors.New(msg), hint: h} }

// Wrap returns err with hint h, used unless a cause of err has a hint of
// its own. Wrap(nil, h) is nil.
func Wrap(err error, h string) error {
	if err == nil {
		return nil
	}
	return &Error{err: err, hint: h}
}

// Override returns err with hint h, which replaces the hints of err's
// causes (but not an override further out). Override(nil, h) is nil.
func Override(err error, h string) error {
	if err == nil {
		return nil
	}
	return &Error{err: err, hint: h, override: true}
}

// Of returns the hint that wins for err ("" if none): the outermost
// override, else the deepest hint (for an error joining several, the
// first cause that has one).
func Of(err error) string {
	for e := err; e != nil; {
		if h, ok := e.(*Error); ok && h.override && h.hint != "" {
			return h.hint
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return deepest(err)
}

// deepest returns the hint found deepest in err's chain.
func deepest(err error) string {
	if err == nil {
		return ""
	}
	var below string
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		below = Of(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if below = Of(e); below != "" {
				break
			}
		}
	}
	if below != "" {
		return below
	}
	if h, ok := err.(*Error); ok {
		return h.hint
	}
	return ""
}
