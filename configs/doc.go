// Package configs is the station's typed configuration: the YAML keys
// (station, tpm, ownership, pki, dps, firmware, flash; every one in
// station.example.yaml), each one overridable from the environment as
// STATION_<SECTION>_<KEY>. env.go holds the one list of the other variables
// station reads (NonKeyEnv); docs/CLI.md lists them all for users.
//
// Loading is strict: an unknown key, a malformed handle or duration, or a
// forbidden policy (owner_auth escrow with TPM attestation) is an
// *Error naming the key, which the command line maps to exit code 2. Files
// named by the config are checked by the command that needs them
// (CheckProvision), so `station init` works before the PKI exists.
//
// No TPM vendor certificate ships with station: tpm.vendor_roots names the
// folder of the CA certificates the operator's TPM vendors publish
// (docs/VENDOR-ROOTS.md).
package configs
