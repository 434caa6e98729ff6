package agent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/hint"
)

// Server issues device certificates from an open issuer to clients of the
// same uid.
type Server struct {
	Issuer *certgen.Issuer
	Policy Policy
	// IdleTimeout stops the agent after this long without a request (0:
	// never).
	IdleTimeout time.Duration
	// Log gets one record per request: refusals at warning level, issued
	// certificates at info (no secrets: serials, IDs, peers). nil: none.
	Log *slog.Logger

	mu     sync.Mutex // serializes signing and the count
	issued int
	uid    uint32
}

// errIdle is why Serve stopped when the idle timeout passed.
var errIdle = errors.New("idle timeout")

// Listen makes the agent's socket at path: its folder is created 0700 when
// missing and must otherwise be a folder of this user that no one else can
// enter; a socket left by a killed agent is replaced, one a live agent
// serves is refused (ErrInUse), anything else at path is left alone
// (ErrUnsafeSocket). The socket is 0600.
func Listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: creating %s: %w", ErrUnsafeSocket, dir, err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, hint.Wrap(fmt.Errorf("%w: %s exists and is not a socket", ErrUnsafeSocket, path),
				"it is left alone: remove it or choose another agent.sock")
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		}
		if err := os.Remove(path); err != nil { // a killed agent's socket
			return nil, fmt.Errorf("%w: removing the stale socket %s: %w", ErrUnsafeSocket, path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%w: listening on %s: %w", ErrUnsafeSocket, path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnsafeSocket, err)
	}
	return ln, nil
}

// checkPrivateDir requires dir to be a real folder owned by this user with
// no access for group or others.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafeSocket, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a folder (a symbolic link is refused)", ErrUnsafeSocket, dir)
	}
	if uid, ok := ownerUID(fi); ok && uid != uint32(os.Getuid()) {
		return hint.Wrap(fmt.Errorf("%w: %s belongs to uid %d, not to this user (uid %d)", ErrUnsafeSocket, dir, uid, os.Getuid()),
			"put the socket in a folder of the station's user (agent.sock)")
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return hint.Wrap(fmt.Errorf("%w: %s is open to other users (mode %04o)", ErrUnsafeSocket, dir, fi.Mode().Perm()),
			"chmod 700 "+dir+", or choose a private folder for agent.sock")
	}
	return nil
}

// Serve answers requests on ln until ctx is done or the idle timeout
// passes, then closes ln (removing the socket) and waits for requests in
// progress. It returns nil when stopped by ctx, and a message-only error
// when the idle timeout stopped it.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.uid = uint32(os.Getuid())
	var (
		wg       sync.WaitGroup
		activity = make(chan struct{}, 1)
		stopped  = make(chan error, 1)
	)
	go func() {
		var idle <-chan time.Time
		var timer *time.Timer
		if s.IdleTimeout > 0 {
			timer = time.NewTimer(s.IdleTimeout)
			idle = timer.C
		}
		for {
			select {
			case <-ctx.Done():
				stopped <- nil
				ln.Close()
				return
			case <-idle:
				stopped <- errIdle
				ln.Close()
				return
			case <-activity:
				if timer != nil {
					timer.Reset(s.IdleTimeout)
				}
			}
		}
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			wg.Wait()
			select {
			case why := <-stopped:
				if why != nil {
					return fmt.Errorf("stopped after %s without a request", s.IdleTimeout)
				}
				return nil
			default:
				ln.Close()
				return fmt.Errorf("accepting on the agent socket: %w", err)
			}
		}
		select {
		case activity <- struct{}{}:
		default:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(c)
		}()
	}
}

// allowUID is the agent's access rule: only its own user.
func allowUID(peer, self uint32) error {
	if peer != self {
		return fmt.Errorf("%w: uid %d, not this agent's %d", ErrPeer, peer, self)
	}
	return nil
}

// checkPeer applies allowUID to c's kernel-reported peer.
func checkPeer(c *net.UnixConn, self uint32) error {
	uid, err := peerUID(c)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPeer, err)
	}
	return allowUID(uid, self)
}

func (s *Server) handle(c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if err := checkPeer(c, s.uid); err != nil {
		s.Log.Warn("station agent: refused a connection", "err", err)
		writeMsg(c, &response{Error: err.Error(), Class: classPeer})
		return
	}
	var req request
	if err := json.NewDecoder(io.LimitReader(c, maxMessage)).Decode(&req); err != nil {
		s.Log.Warn("station agent: refused a malformed request", "err", err)
		writeMsg(c, &response{Error: "malformed request: " + err.Error(), Class: classOther})
		return
	}
	switch req.Op {
	case opInfo:
		writeMsg(c, &response{Info: s.info()})
	case opIssue:
		cert, err := s.issue(&req)
		if err != nil {
			s.Log.Warn("station agent: refused unit", "serial", req.UnitSerial, "registration_id", req.RegistrationID, "err", err)
			writeMsg(c, errorResponse(err))
			return
		}
		s.Log.Info("station agent: issued certificate", "cert_serial", certgen.SerialHex(cert), "serial", req.UnitSerial, "registration_id", req.RegistrationID)
		writeMsg(c, &response{Cert: cert.Raw})
	default:
		writeMsg(c, &response{Error: fmt.Sprintf("unknown operation %q", req.Op), Class: classOther})
	}
}

func (s *Server) info() *Info {
	sum := sha256.Sum256(s.Issuer.Cert.Raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Info{PID: os.Getpid(), IssuerSHA256: hex.EncodeToString(sum[:]), IssuerCN: s.Issuer.Cert.Subject.CommonName,
		Policy: s.Policy, Issued: s.issued}
}

// issue runs certgen's issuance policy with the agent's parameters. The
// ceiling counts the larger of the client's count and the agent's own.
func (s *Server) issue(req *request) (*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("%w: the CSR does not parse: %v", certgen.ErrPolicy, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cert, err := s.Issuer.Issue(certgen.LeafRequest{
		CSR:            csr,
		RegistrationID: req.RegistrationID,
		UnitSerial:     req.UnitSerial,
		SANURI:         s.Policy.SANURI,
		Validity:       s.Policy.Validity,
		Warehouse:      s.Policy.Warehouse,
		MaxIssued:      s.Policy.MaxIssued,
		Issued:         max(req.Issued, s.issued),
	})
	if err != nil {
		return nil, err
	}
	s.issued++
	return cert, nil
}

func errorResponse(err error) *response {
	r := &response{Error: err.Error(), Class: classOther, Hint: hint.Of(err)}
	switch {
	case errors.Is(err, certgen.ErrPolicy):
		r.Class = classPolicy
	case errors.Is(err, certgen.ErrHSM):
		r.Class = classHSM
	case errors.Is(err, certgen.ErrIssuer):
		r.Class = classIssuer
	}
	return r
}

func writeMsg(w io.Writer, v any) error {
	bw := bufio.NewWriter(w)
	if err := json.NewEncoder(bw).Encode(v); err != nil {
		return err
	}
	return bw.Flush()
}
