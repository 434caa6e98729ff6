package flash

import (
	"fmt"
	"strings"
)

// Placeholders an exec tool's argument templates may use. Each argument is
// expanded on its own into exactly one argv entry: no shell, no splitting.
var (
	writePlaceholders = map[string]bool{
		"firmware": true, "bundle": true, "bundle_file": true, "serial": true, "port": true,
		"registration_id": true, "firmware_sha256": true, "firmware_size": true, "bundle_size": true,
	}
	readbackPlaceholders = map[string]bool{
		"serial": true, "port": true, "registration_id": true, "firmware_size": true, "bundle_size": true,
		"readback_firmware": true, "readback_bundle": true,
	}
)

type piece struct {
	lit string
	ph  string // placeholder name; lit unused when set
}

// argTemplate is one parsed argument template.
type argTemplate []piece

// parseTemplate parses "--port={port}" style text; "{{" and "}}" stand for
// literal braces. Unknown placeholders are errors.
func parseTemplate(s string, allowed map[string]bool) (argTemplate, error) {
	var t argTemplate
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("argument %q: unclosed {", s)
			}
			name := s[i+1 : i+end]
			if !allowed[name] {
				return nil, fmt.Errorf("argument %q: unknown placeholder {%s}", s, name)
			}
			if lit.Len() > 0 {
				t = append(t, piece{lit: lit.String()})
				lit.Reset()
			}
			t = append(t, piece{ph: name})
			i += end
		case c == '}':
			return nil, fmt.Errorf("argument %q: stray }", s)
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 || len(t) == 0 {
		t = append(t, piece{lit: lit.String()})
	}
	return t, nil
}

func (t argTemplate) uses(name string) bool {
	for _, p := range t {
		if p.ph == name {
			return true
		}
	}
	return false
}

// expand substitutes values verbatim (they are data, never re-parsed).
func (t argTemplate) expand(vals map[string]string) (string, error) {
	var b strings.Builder
	for _, p := range t {
		if p.ph == "" {
			b.WriteString(p.lit)
			continue
		}
		v, ok := vals[p.ph]
		if !ok {
			return "", fmt.Errorf("no value for {%s}", p.ph)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func parseTemplates(args []string, allowed map[string]bool) ([]argTemplate, error) {
	ts := make([]argTemplate, 0, len(args))
	for _, a := range args {
		t, err := parseTemplate(a, allowed)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

func expandAll(ts []argTemplate, vals map[string]string) ([]string, error) {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		s, err := t.expand(vals)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func anyUses(ts []argTemplate, name string) bool {
	for _, t := range ts {
		if t.uses(name) {
			return true
		}
	}
	return false
}
