package audit

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// OriginPrefix starts every checkpoint origin: the origin (and the signing
// key's name) of station S's log is "station/S".
const OriginPrefix = "station/"

// Origin returns the checkpoint origin of a station's log.
func Origin(stationID string) string { return OriginPrefix + stationID }

// validStationID reports whether id can name a log: a non-empty UTF-8 string
// with no space or '+' (the signed-note key name rules).
func validStationID(id string) bool {
	return id != "" && utf8.ValidString(id) && strings.IndexFunc(id, unicode.IsSpace) < 0 && !strings.Contains(id, "+")
}

// Checkpoint is a signed tree head: the log named Origin had Size records
// whose RFC 6962 Merkle tree hash is Root.
type Checkpoint struct {
	Origin string    `json:"origin"`
	Size   uint64    `json:"size"`
	Root   tlog.Hash `json:"root"`
}

// StationID is the station the checkpoint's origin names.
func (c Checkpoint) StationID() string { return strings.TrimPrefix(c.Origin, OriginPrefix) }

// Text is the checkpoint body in the c2sp.org/tlog-checkpoint format:
// origin, decimal size and base64 root hash, one per line.
func (c Checkpoint) Text() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ErrCheckpoint is wrapped by every reason a checkpoint is rejected.
var ErrCheckpoint = errors.New("bad checkpoint")

func parseCheckpointText(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return Checkpoint{}, fmt.Errorf("%w: want 3 lines (origin, size, root)", ErrCheckpoint)
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	if !strings.HasPrefix(origin, OriginPrefix) || !validStationID(strings.TrimPrefix(origin, OriginPrefix)) {
		return Checkpoint{}, fmt.Errorf("%w: origin %q is not a station log", ErrCheckpoint, origin)
	}
	sizeText := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != sizeText || size > 1<<62 {
		return Checkpoint{}, fmt.Errorf("%w: bad size %q", ErrCheckpoint, sizeText)
	}
	root, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(lines[2], "\n"))
	if err != nil || len(root) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("%w: bad root hash", ErrCheckpoint)
	}
	c := Checkpoint{Origin: origin, Size: size}
	copy(c.Root[:], root)
	if !bytes.Equal(c.Text(), []byte(text)) {
		return Checkpoint{}, fmt.Errorf("%w: not canonical", ErrCheckpoint)
	}
	return c, nil
}

// OpenCheckpoint verifies a signed checkpoint note against pub, the only key
// trusted, and returns what it says. The key's name is the checkpoint's own
// origin, so a note signed by pub for another station's log does not open
// as this one's unless the caller compares Origin.
func OpenCheckpoint(msg []byte, pub crypto.PublicKey) (Checkpoint, error) {
	first, _, ok := bytes.Cut(msg, []byte("\n"))
	if !ok || !utf8.Valid(first) {
		return Checkpoint{}, fmt.Errorf("%w: malformed note", ErrCheckpoint)
	}
	v, err := newNoteVerifier(string(first), pub)
	if err != nil {
		return Checkpoint{}, err
	}
	if !validNoteName(string(first)) {
		return Checkpoint{}, fmt.Errorf("%w: origin %q is not a valid key name", ErrCheckpoint, first)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Checkpoint{}, fmt.Errorf("%w: not signed by the given key (key ID %s)", ErrCheckpoint, keyIDString(v.id))
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("%w: signature by the given key does not verify", ErrCheckpoint)
		}
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	return parseCheckpointText(n.Text)
}

func validNoteName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// signCheckpoint returns the signed note for c.
func signCheckpoint(c Checkpoint, s *noteSigner) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(c.Text())}, s)
}
