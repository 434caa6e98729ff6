package swtpmtest_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/tpmops"
)

func pool(t *testing.T, pems ...[]byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, b := range pems {
		if !p.AppendCertsFromPEM(b) {
			t.Fatal("bad PEM")
		}
	}
	return p
}

func TestStart(t *testing.T) {
	other := swtpmtest.NewCA(t)
	for _, tc := range []struct {
		name         string
		opts         swtpmtest.Options
		wantCert     bool
		wantEK       bool
		wantVendorCA *swtpmtest.CA
	}{
		{"default", swtpmtest.Options{}, true, true, nil},
		{"vendor CA", swtpmtest.Options{VendorCA: other}, true, true, other},
		{"no EK cert", swtpmtest.Options{NoEKCert: true}, false, true, nil},
		{"blank", swtpmtest.Options{Blank: true}, false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := swtpmtest.Start(t, tc.opts)
			if !strings.HasPrefix(sw.Addr, "swtpm://127.0.0.1:") || sw.Pid <= 0 {
				t.Fatalf("instance %+v", sw)
			}
			tp, err := tpmops.Open(sw.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			_, err = tp.ReadPublic(0x81010001)
			if tc.wantEK != (err == nil) {
				t.Fatalf("EK persisted: %v, want %v", err, tc.wantEK)
			}
			der, err := tp.ReadEKCert(tpmops.RSA2048)
			if !tc.wantCert {
				if !errors.Is(err, tpmops.ErrNoEKCert) {
					t.Fatalf("ReadEKCert: %v, want ErrNoEKCert", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantVendorCA != nil && sw.CA != tc.wantVendorCA {
				t.Fatal("instance does not report the vendor CA it was given")
			}
			// The CA is private: it lives in the test's temporary folder.
			if !strings.HasPrefix(sw.CA.Dir, os.TempDir()) {
				t.Fatalf("CA folder %s is not temporary", sw.CA.Dir)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			cert.UnhandledCriticalExtensions = nil // TCG SAN; tpmops.VerifyEKCert handles it
			opts := x509.VerifyOptions{Roots: pool(t, sw.CA.RootPEM), Intermediates: pool(t, sw.CA.IssuerPEM), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
			if _, err := cert.Verify(opts); err != nil {
				t.Fatalf("EK certificate does not chain to the instance's CA: %v", err)
			}
			if sw.CA != other {
				opts.Roots, opts.Intermediates = pool(t, other.RootPEM), pool(t, other.IssuerPEM)
				if _, err := cert.Verify(opts); err == nil {
					t.Fatal("EK certificate chains to another CA")
				}
			}
		})
	}
}

func TestCAsDiffer(t *testing.T) {
	a, b := swtpmtest.NewCA(t), swtpmtest.NewCA(t)
	if bytes.Equal(a.RootPEM, b.RootPEM) {
		t.Fatal("two NewCA share a root")
	}
	blk, _ := pem.Decode(a.RootPEM)
	root, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || !root.IsCA || root.NotAfter.Before(time.Now()) {
		t.Fatalf("root: %v", err)
	}
}

func TestStopRestart(t *testing.T) {
	sw := swtpmtest.Start(t, swtpmtest.Options{})
	tp, err := tpmops.Open(sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ek, _, err := tp.EnsureEK(tpmops.ECCP256, nil) // persisted now: must survive
	if err != nil {
		t.Fatal(err)
	}
	tp.Close()
	pid := sw.Pid
	sw.Restart()
	if sw.Pid == pid {
		t.Fatal("Restart kept the old process")
	}
	tp, err = tpmops.Open(sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tp.ReadPublic(ek.Handle)
	if err != nil || !bytes.Equal(k.Name, ek.Name) {
		t.Fatalf("persisted EK lost across restart: %v", err)
	}
	// An orderly Shutdown was sent: no DA failure was counted.
	if p, err := tp.Permanent(); err != nil || p.InLockout {
		t.Fatalf("Permanent: %+v, %v", p, err)
	}
	tp.Close()
	sw.Stop()
	sw.Stop() // idempotent
	if err := syscallKill0(sw.Pid); err == nil {
		t.Fatalf("swtpm pid %d still running after Stop", sw.Pid)
	}
	if _, err := tpmops.Open(sw.Addr); !errors.Is(err, tpmops.ErrUnreachable) {
		t.Fatalf("Open after Stop: %v, want ErrUnreachable", err)
	}
}
