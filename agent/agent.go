package agent

import (
	"errors"
	"time"

	"github.com/factory-id/station/internal/hint"
)

// Errors of the agent and its clients.
var (
	// ErrUnavailable means no agent answers at the socket (not started,
	// stopped, killed): retryable once it runs again (exit 5).
	ErrUnavailable = hint.Wrap(errors.New("station agent is not reachable"),
		"start `station agent` (it asks for the line key's password once) and re-run; or unset STATION_AGENT_SOCK (agent.sock) to have each process open the key with STATION_PKI_KEY_PASSWORD")
	// ErrMismatch means the agent serves another line intermediate or
	// another issuance policy than the client's configuration says.
	ErrMismatch = hint.Wrap(errors.New("station agent serves another issuer or policy"),
		"restart `station agent` with the same config as provision (pki.issuer_cert, pki.validity, pki.warehouse, pki.san_uri, pki.max_issued)")
	// ErrUnsafeSocket means the socket's folder is not private to the
	// station's user, or something that is not a socket is at its path.
	ErrUnsafeSocket = errors.New("unsafe agent socket")
	// ErrInUse means another agent already serves the socket.
	ErrInUse = hint.Wrap(errors.New("another station agent already serves this socket"),
		"use the running agent, or stop it first (its pid is in its log line)")
	// ErrPeer means the other end of the socket runs as another user.
	ErrPeer = errors.New("the other end of the agent socket is another user")
)

// Policy is the issuance policy's parameters that the agent applies, from
// its configuration.
type Policy struct {
	SANURI    string        `json:"san_uri"`
	Validity  time.Duration `json:"validity_ns"`
	Warehouse time.Duration `json:"warehouse_ns"`
	MaxIssued int           `json:"max_issued"`
}

// Info is what the agent says about itself.
type Info struct {
	PID          int    `json:"pid"`
	IssuerSHA256 string `json:"issuer_sha256"`
	IssuerCN     string `json:"issuer_cn"`
	Policy       Policy `json:"policy"`
	Issued       int    `json:"issued"` // certificates signed since it started
}

// Request operations.
const (
	opInfo  = "info"
	opIssue = "issue"
)

// request is one client request.
type request struct {
	Op             string `json:"op"`
	CSR            []byte `json:"csr,omitempty"` // DER
	RegistrationID string `json:"registration_id,omitempty"`
	UnitSerial     string `json:"unit_serial,omitempty"`
	// Issued is how many leaves the station database counts from this
	// issuer, this one's slot excluded (for pki.max_issued).
	Issued int `json:"issued,omitempty"`
}

// Error classes a response carries, so the client's error unwraps to the
// sentinel the agent's error did (the exit code is the same either way).
const (
	classPolicy = "policy"
	classIssuer = "issuer"
	classHSM    = "hsm"
	classPeer   = "peer"
	classOther  = "other"
)

type response struct {
	Cert  []byte `json:"cert,omitempty"` // DER
	Info  *Info  `json:"info,omitempty"`
	Error string `json:"error,omitempty"`
	Class string `json:"class,omitempty"`
	Hint  string `json:"hint,omitempty"`
}

// maxMessage bounds a request or response.
const maxMessage = 1 << 16

// ioTimeout bounds one exchange (signing in an HSM included).
var ioTimeout = 30 * time.Second
