package certgen

import (
	"strings"
	"testing"
)

// FuzzParseCertificates: bundles come from operators' files; the parser
// must never panic, and what it accepts re-encodes to the same certificates.
func FuzzParseCertificates(f *testing.F) {
	p := newPKI(f, ECP256)
	f.Add(EncodeCertificates(p.root.cert, p.factory.cert))
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err != nil {
			return
		}
		again, err := ParseCertificates(EncodeCertificates(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("round trip: %v, %d != %d", err, len(again), len(certs))
		}
	})
}

// FuzzNameConstraints: flag values; never panic, and an accepted list
// yields as many subtrees as entries.
func FuzzNameConstraints(f *testing.F) {
	for _, s := range []string{"dns:example.com", "!uri:.bad", "ip:10.0.0.0/8", "email:a@b", "ip:300.1.1.1/8", ":", "dns:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nc, err := ParseNameConstraints([]string{s})
		if err != nil {
			return
		}
		n := len(nc.PermittedDNSDomains) + len(nc.ExcludedDNSDomains) + len(nc.PermittedEmailAddresses) + len(nc.ExcludedEmailAddresses) +
			len(nc.PermittedURIDomains) + len(nc.ExcludedURIDomains) + len(nc.PermittedIPRanges) + len(nc.ExcludedIPRanges)
		if n != 1 || !nc.Critical {
			t.Fatalf("%q gave %d subtrees (critical %v)", s, n, nc.Critical)
		}
	})
}

// FuzzExpandSANURI: unit serials come from scanners and CSV files; whatever
// they hold, an accepted SAN is an absolute URI that contains the serial.
func FuzzExpandSANURI(f *testing.F) {
	for _, s := range []string{"SN-0001", "a/b?c#d", "%zz", " ", "ü"} {
		f.Add(DefaultSANURI, s)
		f.Add("https://units.example/{serial}", s)
	}
	f.Fuzz(func(t *testing.T, tmpl, serial string) {
		u, err := ExpandSANURI(tmpl, serial, "id")
		if err != nil {
			return
		}
		if u.Scheme == "" || !strings.Contains(tmpl, "{serial}") {
			t.Fatalf("accepted %q from %q", u, tmpl)
		}
	})
}

// FuzzRedactURI: whatever the URI, a pin-value never survives redaction.
func FuzzRedactURI(f *testing.F) {
	f.Add("pkcs11:token=t;id=%01;object=k?pin-value=", "s3cret")
	f.Add("pkcs11:token=t;pin-value=", "s3cret")
	f.Fuzz(func(t *testing.T, prefix, pin string) {
		if len(pin) < 4 || strings.ContainsAny(pin, "&;?=%+ #") {
			return
		}
		if strings.Contains(prefix, "?") && !strings.HasSuffix(prefix, "?pin-value=") {
			return
		}
		if !strings.HasSuffix(prefix, "pin-value=") {
			return
		}
		in := prefix + pin
		if out := RedactURI(in); strings.Contains(out, pin) && !strings.Contains(strings.Replace(in, pin, "", 1), pin) {
			t.Fatalf("RedactURI(%q) = %q keeps the PIN", in, out)
		}
	})
}
