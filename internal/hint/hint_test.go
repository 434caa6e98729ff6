package hint

import (
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	base := errors.New("base")
	sentinel := New("sentinel", "sentinel's hint")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"no hint", fmt.Errorf("ctx: %w", base), ""},
		{"sentinel", fmt.Errorf("ctx: %w", sentinel), "sentinel's hint"},
		{"wrap", Wrap(base, "outer"), "outer"},
		{"the deepest hint wins over a default", Wrap(fmt.Errorf("ctx: %w", sentinel), "outer"), "sentinel's hint"},
		{"an override wins over a deeper hint", Override(fmt.Errorf("ctx: %w", sentinel), "outer"), "outer"},
		{"the outermost override wins", Override(Override(sentinel, "inner"), "outer"), "outer"},
		{"an override beneath a default", Wrap(fmt.Errorf("ctx: %w", Override(sentinel, "mid")), "outer"), "mid"},
		{"empty hints do not count", Wrap(New("x", ""), "outer"), "outer"},
		{"joined: first cause with a hint", errors.Join(base, fmt.Errorf("ctx: %w", sentinel), Wrap(base, "second")), "sentinel's hint"},
		{"multiple %w", fmt.Errorf("%w: %w", base, sentinel), "sentinel's hint"},
		{"override inside a join", Wrap(errors.Join(Override(sentinel, "joined override")), "outer"), "joined override"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of(tc.err); got != tc.want {
				t.Errorf("Of(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

// Hints change neither the text nor the identity of an error.
func TestTransparent(t *testing.T) {
	base := errors.New("base")
	sentinel := New("sentinel", "h")
	for _, err := range []error{Wrap(base, "h"), Override(base, "h"), Wrap(fmt.Errorf("ctx: %w", base), "h")} {
		if !errors.Is(err, base) {
			t.Errorf("%v does not wrap base", err)
		}
	}
	if got := Wrap(base, "h").Error(); got != "base" {
		t.Errorf("Error() = %q, want base", got)
	}
	if !errors.Is(fmt.Errorf("x: %w", sentinel), sentinel) || sentinel.Error() != "sentinel" {
		t.Error("sentinel identity or text lost")
	}
	if Wrap(nil, "h") != nil || Override(nil, "h") != nil {
		t.Error("a hint on nil is not nil")
	}
}
