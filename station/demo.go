package station

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/tpmops"
)

// DemoOptions describe a demonstration run of the whole line.
type DemoOptions struct {
	Units   int
	Dir     string // everything the demo makes goes here
	Version string
	// Progress, when set, is called as each unit starts.
	Progress func(serial string)
}

// DemoReport is what the demo did.
type DemoReport struct {
	Dir     string
	Config  string // the station.yaml it wrote: use it with --config to look around
	Results []*Result
	// Verified holds QA's verdict on each unit (station verify), by serial.
	Verified map[string]*VerifyReport
}

// Demo runs the whole line on in-process simulated TPMs: a throwaway
// root → factory → line PKI, a throwaway TPM vendor whose EK certificates it
// writes into each simulated TPM (as a TPM manufacturer does), then the real
// provisioning timeline on each unit, exactly as on the line.
func Demo(ctx context.Context, o DemoOptions) (*DemoReport, error) {
	if o.Units < 1 {
		return nil, fmt.Errorf("demo needs at least one unit")
	}
	// Absolute, so the station.yaml it writes means the same from anywhere.
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	cfg, vendor, err := demoSetup(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("demo set-up: %w", err)
	}
	if _, err := Init(cfg, o.Version); err != nil {
		return nil, err
	}
	env, err := OpenEnv(cfg, o.Version)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	prov, err := NewProvisioner(env, func(string) string { return "" })
	if err != nil {
		return nil, err
	}
	defer prov.Close()
	rep := &DemoReport{Dir: o.Dir, Config: filepath.Join(o.Dir, "station.yaml"), Verified: map[string]*VerifyReport{}}
	for i := 1; i <= o.Units; i++ {
		serial := fmt.Sprintf("DEMO-%04d", i)
		if o.Progress != nil {
			o.Progress(serial)
		}
		res, vr, err := demoUnit(ctx, prov, vendor, serial, filepath.Join(o.Dir, "units", serial))
		if vr != nil {
			rep.Verified[serial] = vr
		}
		if res == nil {
			res = &Result{Serial: serial, Result: ResultFail}
		}
		if err != nil && res.Error == "" {
			res.Result, res.Error = ResultFail, err.Error()
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, nil
}

// demoVendor is the throwaway TPM manufacturer.
type demoVendor struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// demoUnit manufactures one simulated TPM (EK certificate in NV, like a
// vendor's), provisions it, and has QA verify it.
func demoUnit(ctx context.Context, prov *Provisioner, v *demoVendor, serial, flashDir string) (*Result, *VerifyReport, error) {
	tpm, err := tpmops.Open("sim")
	if err != nil {
		return nil, nil, err
	}
	defer tpm.Close()
	alg := tpmops.Alg(prov.env.Config.TPM.EK)
	ek, _, err := tpm.EnsureEK(alg, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("vendor: reading the EK: %w", err)
	}
	der, err := v.ekCert(ek.Pub, serial)
	if err != nil {
		return nil, nil, err
	}
	if err := tpm.ProvisionEKCert(alg, der); err != nil {
		return nil, nil, fmt.Errorf("vendor: writing the EK certificate: %w", err)
	}
	// The unit's storage, as a fixture would mount it.
	if err := os.MkdirAll(flashDir, 0o700); err != nil {
		return nil, nil, err
	}
	flashSpec := "dir:" + flashDir
	res, err := prov.Provision(ctx, Request{Serial: serial, TPM: tpm, TPMAddr: "sim", FlashSpec: flashSpec})
	if err != nil {
		return res, nil, err
	}
	vr, _ := Verify(ctx, prov.env, VerifyRequest{Serial: serial, Device: tpm, TPM: "sim", Flash: flashSpec})
	return res, vr, nil
}

func (v *demoVendor) ekCert(pub crypto.PublicKey, serial string) ([]byte, error) {
	sn, err := certgen.RandomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: "Demo TPM EK " + serial},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(20, 0, 0),
		KeyUsage:     x509.KeyUsageKeyEncipherment,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, v.cert, pub, v.key)
}

// demoSetup makes the throwaway PKI, vendor CA, escrow key and firmware, and
// writes a station.yaml naming them all.
func demoSetup(dir string) (*configs.Config, *demoVendor, error) {
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, nil, err
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err) // crypto/rand does not fail
		}
		return k
	}
	rootKey, factoryKey, lineKey := newKey(), newKey(), newKey()
	root, err := certgen.NewRoot(rootKey, certgen.CAOptions{Subject: "Demo Root CA", Validity: 20 * 365 * 24 * time.Hour, PathLen: -1})
	if err != nil {
		return nil, nil, err
	}
	factory, err := certgen.NewIntermediate(root, rootKey, factoryKey.Public(), certgen.CAOptions{Subject: "Demo Factory CA", Validity: 15 * 365 * 24 * time.Hour, PathLen: 1})
	if err != nil {
		return nil, nil, err
	}
	line, err := certgen.NewIntermediate(factory, factoryKey, lineKey.Public(), certgen.CAOptions{Subject: "Demo Line 1 CA", Validity: 10 * 365 * 24 * time.Hour, PathLen: 0})
	if err != nil {
		return nil, nil, err
	}
	vendorKey := newKey()
	vendorCert, err := certgen.NewRoot(vendorKey, certgen.CAOptions{Subject: "Demo TPM Vendor EK Root", Validity: 30 * 365 * 24 * time.Hour, PathLen: -1})
	if err != nil {
		return nil, nil, err
	}
	escrowKey := newKey()
	escrowPub, err := x509.MarshalPKIXPublicKey(escrowKey.Public())
	if err != nil {
		return nil, nil, err
	}
	escrowPriv, err := x509.MarshalPKCS8PrivateKey(escrowKey)
	if err != nil {
		return nil, nil, err
	}
	firmware := make([]byte, 64<<10)
	rand.Read(firmware)
	sum := sha256.Sum256(firmware)
	// The demo's line key is a plain PEM behind a softkms: URI so the demo
	// needs no password; on a real line it is encrypted PEM or in an HSM.
	lineKeyDER, err := x509.MarshalPKCS8PrivateKey(lineKey)
	if err != nil {
		return nil, nil, err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"pki/root.crt", certgen.EncodeCertificates(root), 0o644},
		{"pki/chain.pem", certgen.EncodeCertificates(factory), 0o644},
		{"pki/line.crt", certgen.EncodeCertificates(line), 0o644},
		{"pki/line.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: lineKeyDER}), 0o600},
		{"vendor-roots/demo-vendor.pem", certgen.EncodeCertificates(vendorCert), 0o644},
		{"escrow.pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: escrowPub}), 0o644},
		{"escrow.key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: escrowPriv}), 0o600},
		{"firmware/app.bin", firmware, 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return nil, nil, err
		}
	}
	cfg := configs.Defaults()
	cfg.Dir = dir
	cfg.Station.ID = "demo-station"
	cfg.Station.DB = filepath.Join(dir, "station.db")
	cfg.Station.SigningKey = "audit-key.pem"
	cfg.Station.Operator = "demo"
	cfg.TPM.Address = "sim"
	cfg.TPM.VendorRoots = "vendor-roots/"
	cfg.Ownership.EscrowPublicKey = "escrow.pub.pem"
	cfg.PKI.IssuerCert, cfg.PKI.IssuerKey = "pki/line.crt", "softkms:"+filepath.Join(dir, "pki/line.key")
	cfg.PKI.Chain, cfg.PKI.Root = "pki/chain.pem", "pki/root.crt"
	cfg.DPS.IDScope = "0ne00000000"
	cfg.Firmware.Image, cfg.Firmware.SHA256, cfg.Firmware.Version = "firmware/app.bin", hex.EncodeToString(sum[:]), "demo-1.0"
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "station.yaml"), y, 0o644); err != nil {
		return nil, nil, err
	}
	return cfg, &demoVendor{cert: vendorCert, key: vendorKey}, nil
}
