package agent

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/hint"
)

// Client asks a station agent for device certificates. It is safe for
// concurrent use (one connection per request).
type Client struct {
	path   string
	issuer *certgen.Issuer // the certificates only: what every leaf must verify through
	info   Info
}

// serialTries bounds how often Issue asks again when a certificate serial
// is already in the station database (as certgen.Issue draws again).
const serialTries = 8

// Dial asks the agent at path who it is and checks that it serves issuer
// (the client's pki.issuer_cert, loaded with certgen.LoadIssuer) under the
// same policy as want, so that what the client records is what its
// configuration says. No agent answering is ErrUnavailable; another issuer
// or policy ErrMismatch; an agent run by another user ErrPeer.
func Dial(path string, issuer *certgen.Issuer, want Policy) (*Client, error) {
	c := &Client{path: path, issuer: issuer}
	resp, err := c.roundTrip(&request{Op: opInfo})
	if err != nil {
		return nil, err
	}
	if resp.Info == nil {
		return nil, fmt.Errorf("%w at %s: no answer to info", ErrUnavailable, path)
	}
	c.info = *resp.Info
	sum := sha256.Sum256(issuer.Cert.Raw)
	if got := hex.EncodeToString(sum[:]); got != c.info.IssuerSHA256 {
		return nil, fmt.Errorf("%w: the agent at %s (pid %d) holds the key of %q (certificate sha256 %s), not pki.issuer_cert's %q (%s)",
			ErrMismatch, path, c.info.PID, c.info.IssuerCN, short(c.info.IssuerSHA256), issuer.Cert.Subject.CommonName, short(got))
	}
	if c.info.Policy != want {
		return nil, fmt.Errorf("%w: the agent at %s (pid %d) issues with %+v, this configuration says %+v", ErrMismatch, path, c.info.PID, c.info.Policy, want)
	}
	return c, nil
}

// Info is what the agent said at Dial.
func (c *Client) Info() Info { return c.info }

// Issue has the agent sign the leaf req asks for. The policy's parameters
// are the agent's (Dial checked they are the client's); req.SerialTaken is
// honoured by asking again; req.Issued is passed on for the ceiling. The
// certificate is checked (chain to the root for clientAuth, the CSR's key,
// the registration ID as CN) before it is returned.
func (c *Client) Issue(req certgen.LeafRequest) (*x509.Certificate, error) {
	if req.CSR == nil {
		return nil, fmt.Errorf("%w: no certificate request", certgen.ErrPolicy)
	}
	for i := 0; ; i++ {
		resp, err := c.roundTrip(&request{Op: opIssue, CSR: req.CSR.Raw, RegistrationID: req.RegistrationID,
			UnitSerial: req.UnitSerial, Issued: req.Issued})
		if err != nil {
			return nil, err
		}
		cert, err := x509.ParseCertificate(resp.Cert)
		if err != nil {
			return nil, fmt.Errorf("%w: the agent's certificate does not parse: %v", certgen.ErrIssuer, err)
		}
		now := req.Now
		if now.IsZero() {
			now = time.Now()
		}
		if err := c.issuer.VerifyLeaf(cert, req.CSR, now); err != nil {
			return nil, err
		}
		if cert.Subject.CommonName != req.RegistrationID {
			return nil, fmt.Errorf("%w: the agent's certificate names %q, not %q", certgen.ErrIssuer, cert.Subject.CommonName, req.RegistrationID)
		}
		if req.SerialTaken == nil || !req.SerialTaken(certgen.SerialHex(cert)) {
			return cert, nil
		}
		if i == serialTries-1 {
			return nil, fmt.Errorf("%w: %d certificate serials in a row from the agent are already in the station database", certgen.ErrPolicy, serialTries)
		}
	}
}

// roundTrip sends one request on a new connection and reads the response;
// an error response comes back as an error of the agent's class.
func (c *Client) roundTrip(req *request) (*response, error) {
	conn, err := net.DialTimeout("unix", c.path, 3*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnavailable, c.path, err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	uc.SetDeadline(time.Now().Add(ioTimeout))
	// The agent must be this user's: a CSR sent to someone else's socket
	// would tell them which units are being made, and their answer is
	// not to be trusted.
	if err := checkPeer(uc, uint32(os.Getuid())); err != nil {
		return nil, fmt.Errorf("the agent at %s: %w", c.path, err)
	}
	if err := writeMsg(uc, req); err != nil {
		return nil, fmt.Errorf("%w at %s: sending: %w", ErrUnavailable, c.path, err)
	}
	var resp response
	if err := json.NewDecoder(io.LimitReader(uc, maxMessage)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("%w at %s: no answer (it stopped?): %w", ErrUnavailable, c.path, err)
	}
	if resp.Error != "" {
		return nil, remote(&resp)
	}
	return &resp, nil
}

// remoteError is an error the agent reported; it unwraps to the sentinel of
// its class, so it has the exit code it would have had in-process.
type remoteError struct {
	msg   string
	class error
}

func (e *remoteError) Error() string { return "station agent: " + e.msg }
func (e *remoteError) Unwrap() error { return e.class }

func remote(r *response) error {
	var class error
	switch r.Class {
	case classPolicy:
		class = certgen.ErrPolicy
	case classIssuer:
		class = certgen.ErrIssuer
	case classHSM:
		class = certgen.ErrHSM
	case classPeer:
		class = ErrPeer
	default:
		class = errors.New(r.Class)
	}
	return hint.Wrap(&remoteError{msg: r.Error, class: class}, r.Hint)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
