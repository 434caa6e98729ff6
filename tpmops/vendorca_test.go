package tpmops

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/factory-id/station/internal/sharedtest"
)

var updateManifest = flag.Bool("update-manifest", false, "rewrite vendorca_manifest.json from the shared vendor CA collection")

// manifestSources are the shared folders of vendor CA certificates the
// manifest is generated from.
func manifestSources(t testing.TB) []string {
	return []string{sharedtest.Dir(t, "tpm-vendor-cas"), filepath.Join(sharedtest.Dir(t, "ekcorpus"), "cas")}
}

// generateManifest describes every distinct certificate Go can parse in the
// shared vendor CA folders (the corpus's deliberately non-DER copies are
// left out: they anchor nothing).
func generateManifest(t testing.TB) []byte {
	t.Helper()
	seen := map[string]bool{}
	var out []KnownCA
	for _, dir := range manifestSources(t) {
		v, err := LoadVendorRoots(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range v.Certs {
			k := knownCAOf(c)
			if !seen[k.SHA256] {
				seen[k.SHA256] = true
				out = append(out, k)
			}
		}
	}
	slices.SortFunc(out, func(a, b KnownCA) int {
		return cmp.Or(cmp.Compare(a.Vendor, b.Vendor), cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.SHA256, b.SHA256))
	})
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestVendorCAManifest keeps the embedded manifest in step with the shared
// collection: regenerate with -update-manifest.
func TestVendorCAManifest(t *testing.T) {
	want := generateManifest(t)
	if *updateManifest {
		if err := os.WriteFile("vendorca_manifest.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(vendorCAManifest, want) {
		t.Fatal("vendorca_manifest.json is out of date with the shared vendor CA collection: go test ./tpmops -run TestVendorCAManifest -update-manifest")
	}
	// The manifest names what a folder holds and lacks.
	v, err := LoadVendorRoots(sharedtest.Dir(t, "tpm-vendor-cas"))
	if err != nil {
		t.Fatal(err)
	}
	inv := v.Inventory()
	if len(inv.Known) != len(v.Certs) || len(inv.Unknown) != 0 {
		t.Fatalf("known %d unknown %d of %d", len(inv.Known), len(inv.Unknown), len(v.Certs))
	}
	lacks := map[string]bool{}
	for _, k := range inv.Lacking {
		lacks[k.Subject] = true
	}
	for _, s := range []string{
		"CN=Infineon OPTIGA(TM) RSA Manufacturing CA 036,OU=OPTIGA(TM) TPM2.0,O=Infineon Technologies AG,C=DE",
		"CN=STSAFE RSA Root CA 02,O=STMicroelectronics NV,C=CH",
		"CN=Nuvoton TPM Root CA 2010,O=Nuvoton Technology Corporation,C=TW",
	} {
		if !lacks[s] {
			t.Errorf("inventory of the keylime bundle does not say it lacks %s", s)
		}
	}
	ca := newTestCA(t)
	own := rootsFrom(t, certPEM(ca.root))
	if inv := own.Inventory(); len(inv.Unknown) != 1 || len(inv.Known) != 0 || len(inv.Lacking) != 0 {
		t.Fatalf("a private CA's folder: %+v", inv)
	}
}
