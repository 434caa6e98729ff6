package ptytest

import "testing"

func TestPlain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain\r\n", "plain\n"},
		{"\x1b[1;31mFAIL\x1b[m  SN-1", "FAIL  SN-1"},
		{"ek\x1b[16X\x1b[16C0.1 s", "ek                0.1 s"},
		{"a\x1b[Cb", "a b"},
		{"\x1b]11;?\x1b\\\x1b[6nx", "x"},
		{"\x1b]0;title\x07y", "y"},
		{"\x1b7z\x1b8", "z"},
		{"cut\x1b[3", "cut"},
	} {
		if got := Plain(tc.in); got != tc.want {
			t.Errorf("Plain(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
