package cmd

import (
	"crypto"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/station"
)

// newEnrollCommand is `station enroll`: DPS enrollment exports.
func newEnrollCommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "enroll",
		Short: "Export DPS enrollments, verify exports, merge many stations' exports",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newEnrollExportCommand(g), newEnrollVerifyExportCommand(g), newEnrollMergeCommand(g))
	return c
}

// enrollParseTime accepts RFC 3339 or a date (YYYY-MM-DD, midnight UTC).
func enrollParseTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, cli.Usagef("%s %q: want RFC 3339 (2026-03-01T08:00:00Z) or a date (2026-03-01)", flag, s)
}

// ownStationKey is this station's public key, the key a check trusts when
// no --key is given (its own exports, checked on the station). Without a
// usable station configuration it is the no-key error: a key inside the
// export would prove nothing.
func ownStationKey(g *globals) (crypto.PublicKey, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, enrollNoKeyError()
	}
	pub, err := station.LoadSigningKey(cfg)
	if err != nil {
		return nil, enrollNoKeyError()
	}
	return pub, nil
}

func enrollNoKeyError() error {
	return hint.Wrap(enroll.ErrNoKey, "give the station's public key with --key PUB.pem (`station audit pubkey` on that station prints it); a key inside the export would prove nothing")
}

func enrollJoin(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}
