package tpmops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// TPM is one open connection to one TPM. Its methods must not be called
// concurrently with each other (a TPM executes one command at a time; the
// transport serialises commands anyway).
type TPM struct {
	addr   string
	tr     *retryTransport
	closer io.Closer

	nvBufMax int // TPM_PT_NV_BUFFER_MAX, cached
}

// Open opens a TPM by address:
//
//	sim, sim:SEED        go-tpm-tools simulator in this process (one at a time);
//	                     SEED (int64) gives a reproducible (insecure) TPM
//	swtpm://HOST:PORT    swtpm's server port (raw TPM command stream)
//	unix:///PATH         swtpm's server Unix socket (raw TPM command stream)
//	/dev/tpmrm0, ...     a character device (the kernel's resource manager)
//
// The simulator is one per process: Open("sim") blocks until the simulator
// opened before is Closed, and every Open gives a freshly manufactured TPM
// (with sim:SEED the same seeds, hence the same EK, but empty NV and no
// persistent keys): do not Close it between steps that must see each other.
//
// Every transport retries TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING with
// bounded backoff. A TPM that cannot be reached gives an error wrapping
// ErrUnreachable.
func Open(addr string) (*TPM, error) {
	return OpenWrapped(addr, nil)
}

// OpenWrapped is Open with wrap (when not nil) around the connection,
// beneath the retries and the statistics: every command sent to the TPM,
// retries included, goes through it and Stats counts the time it takes.
// It is the seam for measurements, such as internal/tpmlatency's model of
// a discrete TPM's timing.
func OpenWrapped(addr string, wrap func(transport.TPM) transport.TPM) (*TPM, error) {
	tr, closer, err := openTransport(addr)
	if errors.Is(err, ErrBadAddress) {
		return nil, fmt.Errorf("opening TPM %s: %w", redactAddr(addr), err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening TPM %s: %w: %w", redactAddr(addr), ErrUnreachable, err)
	}
	if wrap != nil {
		tr = wrap(tr)
	}
	return &TPM{addr: addr, tr: &retryTransport{inner: tr, addr: addr}, closer: closer}, nil
}

// Addr returns the address the TPM was opened with.
func (t *TPM) Addr() string { return t.addr }

// Close closes the connection (and stops an in-process simulator).
func (t *TPM) Close() error {
	if t == nil || t.closer == nil {
		return nil
	}
	c := t.closer
	t.closer = nil
	return c.Close()
}

// Transport returns the command channel, for callers that run TPM commands
// of their own (credential activation). It retries like every call here.
func (t *TPM) Transport() transport.TPM { return t.tr }

const dialTimeout = 5 * time.Second

// CheckAddress checks a TPM address's syntax without opening it (a flag or
// a config value, before anything runs). A malformed address wraps
// ErrBadAddress.
func CheckAddress(addr string) error {
	_, err := parseAddress(addr)
	if err != nil {
		return fmt.Errorf("TPM address %s: %w", redactAddr(addr), err)
	}
	return nil
}

// address is a parsed TPM address.
type address struct {
	kind string // "sim", "tcp", "unix", "path"
	seed *int64 // sim:SEED
	dial string // host:port, socket path or device path
}

func parseAddress(addr string) (address, error) {
	switch {
	case addr == "":
		return address{}, fmt.Errorf("%w: empty", ErrBadAddress)
	case strings.ContainsFunc(addr, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return address{}, fmt.Errorf("%w: control character", ErrBadAddress)
	case addr == "sim" || strings.HasPrefix(addr, "sim:"):
		a := address{kind: "sim"}
		if v, ok := strings.CutPrefix(addr, "sim:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return address{}, fmt.Errorf("%w: simulator seed %q is not an integer", ErrBadAddress, v)
			}
			a.seed = &n
		}
		return a, nil
	case strings.HasPrefix(addr, "swtpm://"):
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" || u.Port() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return address{}, fmt.Errorf("%w: want swtpm://HOST:PORT", ErrBadAddress)
		}
		if p, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || p == 0 {
			return address{}, fmt.Errorf("%w: port %q is not 1-65535", ErrBadAddress, u.Port())
		}
		return address{kind: "tcp", dial: u.Host}, nil
	case strings.HasPrefix(addr, "unix://"):
		p := strings.TrimPrefix(addr, "unix://")
		if !strings.HasPrefix(p, "/") {
			return address{}, fmt.Errorf("%w: want unix:///PATH", ErrBadAddress)
		}
		return address{kind: "unix", dial: p}, nil
	case strings.HasPrefix(addr, "/"):
		return address{kind: "path", dial: addr}, nil
	}
	return address{}, fmt.Errorf("%w: want sim, sim:SEED, swtpm://HOST:PORT, unix:///PATH or a device path", ErrBadAddress)
}

func openTransport(addr string) (transport.TPM, io.Closer, error) {
	a, err := parseAddress(addr)
	if err != nil {
		return nil, nil, err
	}
	switch a.kind {
	case "sim":
		return openSimulator(a.seed)
	case "tcp":
		return dialStream("tcp", a.dial)
	case "unix":
		return dialStream("unix", a.dial)
	default:
		fi, err := os.Stat(a.dial)
		if err != nil {
			return nil, nil, err
		}
		if fi.Mode()&os.ModeSocket != 0 {
			return dialStream("unix", a.dial)
		}
		tr, err := linuxtpm.Open(a.dial)
		if err != nil {
			return nil, nil, err
		}
		return tr, tr, nil
	}
}

// redactAddr keeps an address printable: addresses hold no secrets, but a
// malformed one is cut so that logs stay one line.
func redactAddr(addr string) string {
	if len(addr) > 80 {
		return strconv.Quote(addr[:80] + "...")
	}
	return strconv.Quote(addr)
}

// streamTransport speaks the raw TPM command/response stream that swtpm's
// server socket expects (not the MS simulator framing of go-tpm's
// transport/tcp): write a command, read the 10-byte response header, then the
// rest of the response. One connection for the TPM's lifetime.
type streamTransport struct {
	mu       sync.Mutex
	conn     net.Conn
	answered bool // the TPM has answered on this connection
}

const (
	maxResponse     = 1 << 20
	commandDeadline = 2 * time.Minute // discrete TPMs take seconds for RSA keys
)

// firstAnswerDeadline bounds the wait for the first answer on a new
// connection. swtpm serves one client at a time and silently queues the
// next: a TPM that does not answer a first (cheap) command within it is
// busy with another client, and the caller gets ErrUnreachable (retryable)
// instead of hanging.
var firstAnswerDeadline = 5 * time.Second

func dialStream(network, address string) (transport.TPM, io.Closer, error) {
	conn, err := net.DialTimeout(network, address, dialTimeout)
	if err != nil {
		return nil, nil, err
	}
	s := &streamTransport{conn: conn}
	return s, s, nil
}

func (s *streamTransport) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil, fmt.Errorf("%w: connection closed", ErrUnreachable)
	}
	rsp, err := s.roundTrip(cmd)
	if err != nil {
		// The stream may be out of step now: never read a stale response
		// as the answer to a later command.
		_ = s.conn.Close()
		s.conn = nil
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return rsp, nil
}

func (s *streamTransport) roundTrip(cmd []byte) ([]byte, error) {
	deadline := commandDeadline
	if !s.answered {
		deadline = firstAnswerDeadline
	}
	_ = s.conn.SetDeadline(time.Now().Add(deadline))
	rsp, err := s.exchange(cmd)
	if err != nil && !s.answered && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("no answer within %s: the TPM is busy with another client (or hung): %w", deadline, err)
	}
	s.answered = s.answered || err == nil
	return rsp, err
}

func (s *streamTransport) exchange(cmd []byte) ([]byte, error) {
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("sending command: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("response size %d out of range", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	return rsp, nil
}

func (s *streamTransport) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// Response codes after which the TPM did not execute the command and asks to
// be sent it again.
const (
	rcRetry   = 0x922
	rcYielded = 0x908
	rcTesting = 0x90A
)

// retryTransport resends a command the TPM answered with RETRY, YIELDED or
// TESTING (libtpms answers RETRY to the first DA-protected authorization after
// each startup). The command was not executed, so resending the same bytes
// (same session nonces) is correct. Backoff doubles from 2 ms, bounded in
// attempts and total time.
type retryTransport struct {
	mu    sync.Mutex
	inner transport.TPM
	addr  string
	stats Stats
	sleep func(time.Duration) // time.Sleep when nil (tests count instead)
}

// Stats counts the commands sent on a connection and the time spent waiting
// for the TPM to answer them (retries and backoff included), in all and by
// kind of command.
type Stats struct {
	Commands int
	Busy     time.Duration
	ByKind   map[CommandKind]KindStats
}

// KindStats counts the commands of one kind and the time they took.
type KindStats struct {
	Commands int
	Busy     time.Duration
}

// Count returns how many commands of kind k were sent.
func (s Stats) Count(k CommandKind) int { return s.ByKind[k].Commands }

// Since returns what was sent after before was taken (both from the same
// connection): the commands of one step or one unit.
func (s Stats) Since(before Stats) Stats {
	d := Stats{Commands: s.Commands - before.Commands, Busy: s.Busy - before.Busy, ByKind: map[CommandKind]KindStats{}}
	for k, v := range s.ByKind {
		v.Commands -= before.ByKind[k].Commands
		v.Busy -= before.ByKind[k].Busy
		if v.Commands != 0 {
			d.ByKind[k] = v
		}
	}
	return d
}

// Stats returns the connection's command counts and time spent in the TPM.
func (t *TPM) Stats() Stats {
	t.tr.mu.Lock()
	defer t.tr.mu.Unlock()
	s := t.tr.stats
	s.ByKind = maps.Clone(s.ByKind)
	return s
}

const (
	retryAttempts = 16
	retryFirst    = 2 * time.Millisecond
	retryMaxSleep = 500 * time.Millisecond
)

func (r *retryTransport) Send(cmd []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	defer func() {
		d := time.Since(start)
		r.stats.Commands++
		r.stats.Busy += d
		if r.stats.ByKind == nil {
			r.stats.ByKind = map[CommandKind]KindStats{}
		}
		k := KindOf(cmd)
		ks := r.stats.ByKind[k]
		ks.Commands++
		ks.Busy += d
		r.stats.ByKind[k] = ks
	}()
	sleep := retryFirst
	for attempt := 0; ; attempt++ {
		rsp, err := r.inner.Send(cmd)
		if err != nil {
			if errors.Is(err, ErrUnreachable) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		if len(rsp) < 10 {
			return nil, fmt.Errorf("%w: short response (%d bytes)", ErrUnreachable, len(rsp))
		}
		rc := binary.BigEndian.Uint32(rsp[6:10])
		switch rc {
		case rcRetry, rcYielded, rcTesting:
			if attempt+1 >= retryAttempts {
				return nil, busyError(rc)
			}
			if r.sleep != nil {
				r.sleep(sleep)
			} else {
				time.Sleep(sleep)
			}
			sleep = min(sleep*2, retryMaxSleep)
			continue
		}
		if err := busyError(rc); err != nil {
			// Out of object or session slots, memory or NV rate: an
			// environment condition every caller sees the same way.
			return nil, err
		}
		return rsp, nil
	}
}
