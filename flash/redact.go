package flash

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/factory-id/station/credbundle"
)

// redactor removes every secret from text that leaves the package for a
// log or an audit record (a tool's captured output): the raw bytes and
// their hex and base64 spellings.
type redactor [][]byte

func newRedactor(secrets ...credbundle.Secret) redactor {
	var r redactor
	for _, s := range secrets {
		if len(s) < 4 {
			continue
		}
		r = append(r, []byte(s),
			[]byte(hex.EncodeToString(s)),
			[]byte(fmt.Sprintf("%X", []byte(s))),
			[]byte(base64.StdEncoding.EncodeToString(s)),
			[]byte(base64.RawStdEncoding.EncodeToString(s)),
			[]byte(base64.URLEncoding.EncodeToString(s)),
			[]byte(base64.RawURLEncoding.EncodeToString(s)))
	}
	return r
}

func (r redactor) apply(b []byte) []byte {
	for _, s := range r {
		b = bytes.ReplaceAll(b, s, []byte(credbundle.Redacted))
	}
	return b
}
