package regid

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		id   string
		x509 bool
		ok   bool
	}{
		{"unit-0001", true, true},
		{"a", true, true},
		{"a.b_c:d-e", true, true},
		{"", false, false},
		{"-lead", false, false},
		{"trail.", false, false},
		{"UPPER", false, false},
		{"sp ace", false, false},
		{"sn/0001", false, false},
		{strings.Repeat("a", 64), true, true},
		{strings.Repeat("a", 65), true, false},
		{strings.Repeat("a", 128), false, true},
		{strings.Repeat("a", 129), false, false},
	}
	for _, tc := range tests {
		err := Validate(tc.id, tc.x509)
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q, %v) = %v, want ok=%v", tc.id, tc.x509, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q): %v does not wrap ErrInvalid", tc.id, err)
		}
	}
}

// TestKey: IDs differing only in case are one ID to DPS; others are not.
func TestKey(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"case-a", "CASE-A", true},
		{"Case-A", "cAsE-a", true},
		{"case-a", "case-b", false},
		{"sn-1", "sn-1.", false},
	} {
		if got := Key(tc.a) == Key(tc.b); got != tc.same {
			t.Errorf("Key(%q) == Key(%q): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}
