package tpmops

// Alg names a key algorithm with the strings of the config keys tpm.ek and
// tpm.srk.
type Alg string

// The supported key algorithms.
const (
	RSA2048 Alg = "rsa2048"
	ECCP256 Alg = "ecc-p256"
)

// ParseAlg checks s names a supported algorithm.
func ParseAlg(s string) (Alg, error) {
	switch Alg(s) {
	case RSA2048, ECCP256:
		return Alg(s), nil
	}
	return "", errUnknownAlg(s)
}

type errUnknownAlg string

func (e errUnknownAlg) Error() string {
	return "unknown key algorithm " + string(e) + " (want rsa2048 or ecc-p256)"
}
