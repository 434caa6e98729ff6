package tpmops

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// KnownCA is what station knows of a TPM vendor's EK CA certificate:
// facts only (the certificates themselves are the vendors' to publish and
// the operator's to fetch; docs/VENDOR-ROOTS.md says where).
type KnownCA struct {
	Vendor    string    `json:"vendor"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	SHA256    string    `json:"sha256"`
	SKI       string    `json:"ski,omitempty"`
	AKI       string    `json:"aki,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// SelfSigned: a root (subject = issuer, self-signature verifies).
	SelfSigned bool `json:"self_signed"`
}

// vendorCAManifest is generated from the team's vendor CA collection by
// TestVendorCAManifest (go test ./tpmops -run TestVendorCAManifest -update-manifest),
// which also fails when it is out of date.
//
//go:embed vendorca_manifest.json
var vendorCAManifest []byte

var knownCAs = sync.OnceValue(func() []KnownCA {
	var out []KnownCA
	if err := json.Unmarshal(vendorCAManifest, &out); err != nil {
		panic("tpmops: vendorca_manifest.json: " + err.Error())
	}
	return out
})

// KnownCAs returns the manifest of TPM vendor CAs station knows.
func KnownCAs() []KnownCA { return slices.Clone(knownCAs()) }

// knownCAOf describes a certificate as the manifest does.
func knownCAOf(c *x509.Certificate) KnownCA {
	fp := sha256.Sum256(c.Raw)
	k := KnownCA{
		Subject:    c.Subject.String(),
		Issuer:     c.Issuer.String(),
		SHA256:     hex.EncodeToString(fp[:]),
		SKI:        hex.EncodeToString(c.SubjectKeyId),
		AKI:        hex.EncodeToString(c.AuthorityKeyId),
		NotBefore:  c.NotBefore.UTC(),
		NotAfter:   c.NotAfter.UTC(),
		SelfSigned: bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil,
	}
	if len(c.Subject.Organization) > 0 {
		k.Vendor = c.Subject.Organization[0]
	}
	return k
}

// LookupKnownCA finds a certificate in the manifest by its fingerprint.
func LookupKnownCA(c *x509.Certificate) (KnownCA, bool) {
	fp := sha256.Sum256(c.Raw)
	h := hex.EncodeToString(fp[:])
	for _, k := range knownCAs() {
		if k.SHA256 == h {
			return k, true
		}
	}
	return KnownCA{}, false
}

// KnownIssuers lists the known CAs that may have issued c: by name or by
// key identifier.
func KnownIssuers(c *x509.Certificate) []KnownCA {
	aki := hex.EncodeToString(c.AuthorityKeyId)
	iss := c.Issuer.String()
	var out []KnownCA
	for _, k := range knownCAs() {
		if k.Subject == iss || (aki != "" && k.SKI == aki) {
			out = append(out, k)
		}
	}
	return out
}

// FolderInventory is what a roots folder holds and lacks, against the
// manifest.
type FolderInventory struct {
	// Known are the folder's certificates the manifest names; Unknown the
	// others (the operator's own choice, or CAs newer than this release).
	Known   []KnownCA
	Unknown []KnownCA
	// Lacking are the manifest's CAs of the vendors the folder has some
	// certificates of, that it does not hold: what may stop that vendor's
	// chips.
	Lacking []KnownCA
}

// Inventory compares the folder with the manifest.
func (v *VendorRoots) Inventory() FolderInventory {
	var inv FolderInventory
	held := map[string]bool{}
	vendors := map[string]bool{}
	for _, c := range v.Certs {
		k, ok := LookupKnownCA(c)
		if !ok {
			inv.Unknown = append(inv.Unknown, knownCAOf(c))
			continue
		}
		inv.Known = append(inv.Known, k)
		held[k.SHA256] = true
		vendors[k.Vendor] = true
	}
	for _, k := range knownCAs() {
		if vendors[k.Vendor] && !held[k.SHA256] {
			inv.Lacking = append(inv.Lacking, k)
		}
	}
	return inv
}
