package cli

import (
	"crypto"
	"os"
)

// ReadKey reads the PEM key file that flag names with parse (a station's
// public key: audit.ParsePublicKeyPEM; an export recipient's:
// enroll.ParseRecipientKeyPEM). A file that cannot be read or parsed is a
// usage error naming the flag.
func ReadKey(flag, path string, parse func([]byte) (crypto.PublicKey, error)) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, Usagef("%s: %v", flag, err)
	}
	k, err := parse(b)
	if err != nil {
		return nil, Usagef("%s %s: %v", flag, path, err)
	}
	return k, nil
}
