package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"
)

// Event is what a caller asks the log to record.
type Event struct {
	Serial   string // unit serial, "" for station-wide events
	Type     string // e.g. "provision.ek", "provision.done", "verify", "ca.issue", "revoke", "export", "startup", "config"
	Operator string
	Payload  any // marshalled to JSON; must hold no secret
}

// Record is one entry of the audit log. Its canonical bytes (Bytes) are what
// is stored, hashed and exported; Parse accepts exactly those bytes and no
// other spelling of the same record.
type Record struct {
	Seq      uint64    // 1, 2, 3...: the record's Merkle leaf index is Seq-1
	Time     time.Time // UTC, nanoseconds
	Station  string
	Operator string
	Serial   string
	Event    string
	Version  string          // station software version that wrote the record
	Payload  json.RawMessage // compact JSON
	Prev     []byte          // leaf hash of record Seq-1 (32 zero bytes for record 1)
}

// TimeLayout is the canonical time format of a record: UTC, always nine
// fraction digits, so every instant has exactly one spelling.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// errNotCanonical is wrapped by Parse errors.
var errNotCanonical = errors.New("not a canonical record")

// Bytes returns the record's canonical encoding: one line of JSON (without
// the newline) with the fields in this order and nothing else:
//
//	{"seq":N,"time":"T","station":S,"operator":S,"serial":S,"event":S,"version":S,"payload":P,"prev":"H"}
//
// Strings escape only '"', '\\' and control characters (\n, \r, \t, else
// \u00xx); everything else is literal UTF-8. P is compact JSON. H is 64
// lower-case hex digits.
func (r *Record) Bytes() ([]byte, error) {
	return r.appendTo(make([]byte, 0, 256+len(r.Payload)))
}

func (r *Record) appendTo(b []byte) ([]byte, error) {
	if r.Seq == 0 {
		return nil, fmt.Errorf("record sequence numbers start at 1")
	}
	if len(r.Prev) != tlog.HashSize {
		return nil, fmt.Errorf("record %d: prev hash has %d bytes, want %d", r.Seq, len(r.Prev), tlog.HashSize)
	}
	p := r.Payload
	if len(p) == 0 {
		p = json.RawMessage("{}")
	}
	if n, err := scanValue(p, 0, 0); err != nil || n != len(p) || !utf8.Valid(p) {
		return nil, fmt.Errorf("record %d: payload is not compact JSON", r.Seq)
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.UTC().AppendFormat(b, TimeLayout)
	b = append(b, '"')
	for _, f := range []struct{ name, v string }{
		{`,"station":`, r.Station}, {`,"operator":`, r.Operator}, {`,"serial":`, r.Serial},
		{`,"event":`, r.Event}, {`,"version":`, r.Version},
	} {
		if !utf8.ValidString(f.v) {
			return nil, fmt.Errorf("record %d: field %s is not valid UTF-8", r.Seq, f.name[1:len(f.name)-1])
		}
		b = append(b, f.name...)
		b = appendString(b, f.v)
	}
	b = append(b, `,"payload":`...)
	b = append(b, p...)
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, r.Prev)
	b = append(b, `"}`...)
	return b, nil
}

// Hash is the record's Merkle leaf hash, RFC 6962: SHA-256(0x00 || bytes).
// The next record's Prev holds it.
func Hash(canonical []byte) tlog.Hash { return tlog.RecordHash(canonical) }

const hexLower = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexLower[c>>4], hexLower[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Parse decodes canonical record bytes (one line, without the newline). It
// rejects anything Bytes would not have produced, so a record has exactly
// one encoding and what was hashed is what is read.
func Parse(line []byte) (*Record, error) {
	var r Record
	if err := parseInto(&r, line, true); err != nil {
		return nil, err
	}
	return &r, nil
}

// parser walks a canonical record.
type parser struct {
	b   []byte
	i   int
	err error
}

func (p *parser) lit(s string) {
	if p.err != nil {
		return
	}
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.err = fmt.Errorf("%w: want %q at byte %d", errNotCanonical, s, p.i)
		return
	}
	p.i += len(s)
}

func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: "+format, append([]any{errNotCanonical}, args...)...)
	}
}

// str reads a canonically escaped string; strings without escapes are
// returned without copying when alloc is false.
func (p *parser) str(alloc bool) string {
	if p.err != nil {
		return ""
	}
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		p.fail("want a string at byte %d", p.i)
		return ""
	}
	p.i++
	start := p.i
	var out []byte
	escaped := false
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if escaped {
				return string(out)
			}
			if !alloc {
				return unsafeString(s)
			}
			return string(s)
		case c == '\\':
			if !escaped {
				escaped = true
				out = append(out, p.b[start:p.i]...)
			}
			if p.i+1 >= len(p.b) {
				p.fail("truncated escape at byte %d", p.i)
				return ""
			}
			switch e := p.b[p.i+1]; e {
			case '"', '\\':
				out = append(out, e)
				p.i += 2
			case 'n':
				out = append(out, '\n')
				p.i += 2
			case 'r':
				out = append(out, '\r')
				p.i += 2
			case 't':
				out = append(out, '\t')
				p.i += 2
			case 'u':
				if p.i+6 > len(p.b) || p.b[p.i+2] != '0' || p.b[p.i+3] != '0' {
					p.fail("non-canonical escape at byte %d", p.i)
					return ""
				}
				v, ok := unhex2(p.b[p.i+4], p.b[p.i+5])
				if !ok || v >= 0x20 || v == '\n' || v == '\r' || v == '\t' {
					p.fail("non-canonical escape at byte %d", p.i)
					return ""
				}
				out = append(out, v)
				p.i += 6
			default:
				p.fail("non-canonical escape at byte %d", p.i)
				return ""
			}
		case c < 0x20:
			p.fail("control character in string at byte %d", p.i)
			return ""
		case c < utf8.RuneSelf:
			if escaped {
				out = append(out, c)
			}
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size <= 1 {
				p.fail("invalid UTF-8 at byte %d", p.i)
				return ""
			}
			if escaped {
				out = append(out, p.b[p.i:p.i+size]...)
			}
			p.i += size
		}
	}
	p.fail("unterminated string")
	return ""
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhexLower(a)
	y, ok2 := unhexLower(b)
	return x<<4 | y, ok1 && ok2
}

func unhexLower(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// parseInto fills r from line. With full unset it skips the work verification
// does not need (copying strings); r then aliases line.
func parseInto(r *Record, line []byte, full bool) error {
	p := parser{b: line}
	p.lit(`{"seq":`)
	if p.err == nil {
		start := p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		digits := p.b[start:p.i]
		if len(digits) == 0 || len(digits) > 20 || digits[0] == '0' {
			p.fail("bad sequence number")
		} else {
			v, err := strconv.ParseUint(unsafeString(digits), 10, 64)
			if err != nil {
				p.fail("bad sequence number")
			}
			r.Seq = v
		}
	}
	p.lit(`,"time":"`)
	if p.err == nil {
		if p.i+len(TimeLayout) > len(p.b) {
			p.fail("truncated time")
		} else {
			ts := p.b[p.i : p.i+len(TimeLayout)]
			// Every layout position is a fixed digit or separator, and Parse
			// rejects out-of-range fields, so a parsed time has this one
			// spelling.
			for k, c := range ts {
				if l := TimeLayout[k]; (l >= '0' && l <= '9') != (c >= '0' && c <= '9') || (l < '0' || l > '9') && c != l {
					p.fail("non-canonical time")
					break
				}
			}
			t, err := time.Parse(TimeLayout, unsafeString(ts))
			if err != nil {
				p.fail("bad time: %v", err)
			}
			r.Time = t
			p.i += len(TimeLayout)
		}
	}
	p.lit(`","station":`)
	r.Station = p.str(full)
	p.lit(`,"operator":`)
	r.Operator = p.str(full)
	p.lit(`,"serial":`)
	r.Serial = p.str(full)
	p.lit(`,"event":`)
	r.Event = p.str(full)
	p.lit(`,"version":`)
	r.Version = p.str(full)
	p.lit(`,"payload":`)
	if p.err == nil {
		n, err := scanValue(p.b[p.i:], 0, 0)
		if err != nil {
			p.fail("payload: %v", err)
		} else {
			r.Payload = p.b[p.i : p.i+n]
			if full {
				r.Payload = append(json.RawMessage(nil), r.Payload...)
			}
			p.i += n
		}
	}
	p.lit(`,"prev":"`)
	if p.err == nil {
		if p.i+2*tlog.HashSize > len(p.b) {
			p.fail("truncated prev hash")
		} else {
			if cap(r.Prev) < tlog.HashSize {
				r.Prev = make([]byte, tlog.HashSize)
			}
			r.Prev = r.Prev[:tlog.HashSize]
			for k := 0; k < tlog.HashSize; k++ {
				v, ok := unhex2(p.b[p.i+2*k], p.b[p.i+2*k+1])
				if !ok {
					p.fail("prev hash is not lower-case hex")
					break
				}
				r.Prev[k] = v
			}
			p.i += 2 * tlog.HashSize
		}
	}
	p.lit(`"}`)
	if p.err == nil && p.i != len(p.b) {
		p.fail("trailing bytes after record")
	}
	if p.err == nil && r.Seq == 0 {
		p.fail("sequence numbers start at 1")
	}
	return p.err
}

// maxDepth bounds payload nesting (fuzzed input must not exhaust the stack).
const maxDepth = 64

// scanValue returns the length of the compact JSON value at the start of b:
// standard JSON (RFC 8259) with no insignificant whitespace.
func scanValue(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errors.New("payload nested too deeply")
	}
	if i >= len(b) {
		return 0, errors.New("truncated JSON")
	}
	switch c := b[i]; {
	case c == '{':
		i++
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			j, err := scanString(b, i)
			if err != nil {
				return 0, err
			}
			if j >= len(b) || b[j] != ':' {
				return 0, errors.New("want ':' in JSON object")
			}
			if i, err = scanValue(b, j+1, depth+1); err != nil {
				return 0, err
			}
			if i >= len(b) {
				return 0, errors.New("truncated JSON object")
			}
			if b[i] == '}' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return 0, errors.New("want ',' or '}' in JSON object")
			}
			i++
		}
	case c == '[':
		i++
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = scanValue(b, i, depth+1); err != nil {
				return 0, err
			}
			if i >= len(b) {
				return 0, errors.New("truncated JSON array")
			}
			if b[i] == ']' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return 0, errors.New("want ',' or ']' in JSON array")
			}
			i++
		}
	case c == '"':
		return scanString(b, i)
	case c == 't':
		return scanLit(b, i, "true")
	case c == 'f':
		return scanLit(b, i, "false")
	case c == 'n':
		return scanLit(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i)
	}
	return 0, fmt.Errorf("unexpected %q in JSON", b[i])
}

func scanLit(b []byte, i int, lit string) (int, error) {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return 0, errors.New("bad JSON literal")
	}
	return i + len(lit), nil
}

func scanString(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errors.New("want a JSON string")
	}
	for i++; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, errors.New("truncated JSON escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return 0, errors.New("truncated JSON escape")
				}
				for _, h := range b[i+2 : i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, errors.New("bad JSON escape")
					}
				}
				i += 6
			default:
				return 0, errors.New("bad JSON escape")
			}
		case c < 0x20:
			return 0, errors.New("control character in JSON string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, errors.New("invalid UTF-8 in JSON string")
			}
			i += size
		}
	}
	return 0, errors.New("unterminated JSON string")
}

func scanNumber(b []byte, i int) (int, error) {
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return 0, errors.New("bad JSON number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0, errors.New("bad JSON number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, errors.New("bad JSON number")
		}
	}
	return i, nil
}

// MarshalJSON writes the record's canonical bytes.
func (r Record) MarshalJSON() ([]byte, error) { return r.Bytes() }

// Event types station records (Event.Type); others are allowed.
const (
	EventStartup = "startup"  // the station started (version, config digest)
	EventConfig  = "config"   // a configuration change
	EventVerify  = "verify"   // a unit's QA verification result
	EventCAIssue = "ca.issue" // a CA certificate issued
	EventRevoke  = "revoke"   // a unit or intermediate revoked
	EventExport  = "export"   // an audit or enrollment export
	// EventProvisionPrefix starts each provisioning step's type
	// ("provision.ek", "provision.srk", ..., "provision.done").
	EventProvisionPrefix = "provision."
)
