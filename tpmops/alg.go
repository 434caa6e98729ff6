package tpmops

// Alg names a key algorithm with the strings of the config keys tpm.ek and
// tpm.srk.
type Alg string

// The supported key algorithms. ECCP384 is an EK algorithm only (tpm.ek;
// there is no ECC P-384 SRK template).
const (
	RSA2048 Alg = "rsa2048"
	ECCP256 Alg = "ecc-p256"
	ECCP384 Alg = "ecc-p384"
)

// ParseAlg checks s names a supported algorithm.
func ParseAlg(s string) (Alg, error) {
	switch Alg(s) {
	case RSA2048, ECCP256, ECCP384:
		return Alg(s), nil
	}
	return "", errUnknownAlg(s)
}

type errUnknownAlg string

func (e errUnknownAlg) Error() string {
	return "unknown key algorithm " + string(e) + " (want rsa2048, ecc-p256 or ecc-p384)"
}
