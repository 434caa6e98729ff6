package cmd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
)

// tpmCCEvictControl is TPM2_EvictControl's command code.
const tpmCCEvictControl = 0x120

// holdProxy sits between station and a swtpm and forwards the raw TPM
// command stream. Once the TPM answers a TPM2_EvictControl with success
// (the key is now persistent in the TPM), it signals persisted and holds the
// answer back: the station process never learns it, and cannot go on to
// remove the key, until the test kills it. No timing is involved: the test
// waits for the TPM's own answer.
type holdProxy struct {
	ln        net.Listener
	upstream  string
	persisted chan struct{}
	release   chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
}

func newHoldProxy(t *testing.T, upstream string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, upstream: strings.TrimPrefix(upstream, "swtpm://"),
		persisted: make(chan struct{}), release: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *holdProxy) addr() string { return "swtpm://" + p.ln.Addr().String() }

func (p *holdProxy) close() {
	p.once.Do(func() { close(p.release) })
	p.ln.Close()
	p.wg.Wait()
}

func (p *holdProxy) serve() {
	defer p.wg.Done()
	client, err := p.ln.Accept()
	if err != nil {
		return
	}
	defer client.Close()
	tpm, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer tpm.Close()
	go func() { <-p.release; client.Close(); tpm.Close() }()
	held := false
	for {
		cmd, err := readTPMMessage(client)
		if err != nil {
			return
		}
		if _, err := tpm.Write(cmd); err != nil {
			return
		}
		rsp, err := readTPMMessage(tpm)
		if err != nil {
			return
		}
		if binary.BigEndian.Uint32(cmd[6:10]) == tpmCCEvictControl && binary.BigEndian.Uint32(rsp[6:10]) == 0 && !held {
			held = true
			close(p.persisted)
			<-p.release // the answer never reaches station
			return
		}
		if _, err := client.Write(rsp); err != nil {
			return
		}
	}
}

func readTPMMessage(r io.Reader) ([]byte, error) {
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > 1<<20 {
		return nil, fmt.Errorf("size %d", size)
	}
	msg := make([]byte, size)
	copy(msg, hdr)
	_, err := io.ReadFull(r, msg[10:])
	return msg, err
}

// killVerifyAfterPersist runs `station verify` through a holdProxy and
// SIGKILLs it once the TPM has persisted its DPS test key.
func killVerifyAfterPersist(t *testing.T, l *line, serial, addr string) {
	t.Helper()
	p := newHoldProxy(t, addr)
	c := l.cmd("verify", "--serial", serial, "--tpm", p.addr())
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	select {
	case <-p.persisted:
	case err := <-exited:
		t.Fatalf("verify finished before persisting its DPS key: %v\n%s", err, out.String())
	}
	if err := c.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	p.close() // frees swtpm's single connection
}

// persistForeignKey persists, at h, a key station did not make (as another
// tool would) and returns its Name.
func persistForeignKey(t *testing.T, addr string, h tpm2.TPMHandle) []byte {
	t.Helper()
	tp := openTPM(t, addr)
	defer tp.Close()
	tr := tp.Transport()
	// A keyed-hash HMAC key, as a DPS SDK persists at 0x81000100.
	prim, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgKeyedHash,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{UserWithAuth: true, NoDA: true, SignEncrypt: true},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgHMAC, Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC,
					&tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256})},
			}),
		}),
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: []byte("another tool's HMAC key")}),
		}},
	}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: prim.ObjectHandle}.Execute(tr)
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: prim.ObjectHandle, Name: prim.Name},
		PersistentHandle: h,
	}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	return prim.Name.Buffer
}

func nameAt(t *testing.T, addr string, h tpm2.TPMHandle) []byte {
	t.Helper()
	tp := openTPM(t, addr)
	defer tp.Close()
	name, err := tp.ObjectName(h)
	if err != nil {
		t.Fatalf("reading %#x: %v", uint32(h), err)
	}
	return name
}

// evictAt evicts whatever is at h (the attacker's, or the test's, doing).
func evictAt(t *testing.T, addr string, h tpm2.TPMHandle) {
	t.Helper()
	tp := openTPM(t, addr)
	defer tp.Close()
	k, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tp.Transport())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: h, Name: k.Name},
		PersistentHandle: h,
	}).Execute(tp.Transport()); err != nil {
		t.Fatal(err)
	}
}

const dpsTestKeyHandle tpm2.TPMHandle = 0x81000100

// TestVerifyCleansUpAfterKill kills a real `station verify` right after the
// TPM persisted its DPS test key (the key and a loaded transient are left on
// the TPM). The next verify removes exactly that key, flushes the
// transient, and passes; a key station did not make at 0x81000100 is never
// removed, journal or not; and another unit's TPM on the fixture is named.
func TestVerifyCleansUpAfterKill(t *testing.T) {
	vendor := swtpmVendor(t)
	l := newLine(t, vendor)
	provision := func(serial string) string {
		inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
		dir := filepath.Join(t.TempDir(), serial)
		os.MkdirAll(dir, 0o755)
		if out, errOut, code := l.run("provision", "--serial", serial, "--tpm", inst.Addr, "--flash", "dir:"+dir); code != 0 {
			t.Fatalf("provision %s: exit %d\n%s%s", serial, code, out, errOut)
		}
		return inst.Addr
	}

	t.Run("killed-after-persist", func(t *testing.T) {
		addr := provision("KILLV-1")
		killVerifyAfterPersist(t, l, "KILLV-1", addr)
		st := readTPMState(t, addr)
		if !slices.Contains(st.Persistent, dpsTestKeyHandle) || len(st.Transient) == 0 {
			t.Fatalf("after the kill: persistent %#x, transient %#x; want the DPS key at 0x81000100 and a loaded transient", st.Persistent, st.Transient)
		}
		out, errOut, code := l.run("verify", "--serial", "KILLV-1", "--tpm", addr)
		if code != 0 {
			t.Fatalf("verify after the kill: exit %d\n%s%s", code, out, errOut)
		}
		for _, want := range []string{"note: flushed 1 transient handle(s)", "note: removed the DPS test key a killed verify", "PASS  no-leaks", "persisted at 0x81000100"} {
			if !strings.Contains(out, want) {
				t.Errorf("verify output lacks %q:\n%s", want, out)
			}
		}
		st = readTPMState(t, addr)
		if slices.Contains(st.Persistent, dpsTestKeyHandle) || len(st.Transient) != 0 {
			t.Errorf("after the next verify: persistent %#x, transient %#x", st.Persistent, st.Transient)
		}
		// And again: nothing left to clean, still passes.
		if out, _, code := l.run("verify", "--serial", "KILLV-1", "--tpm", addr); code != 0 || strings.Contains(out, "note:") {
			t.Errorf("third verify: exit %d\n%s", code, out)
		}
	})

	t.Run("provision-clears-it-too", func(t *testing.T) {
		// provision of the (finished) unit recognizes verify's leftover.
		addr := provision("KILLV-3")
		killVerifyAfterPersist(t, l, "KILLV-3", addr)
		out, errOut, code := l.run("provision", "--serial", "KILLV-3", "--tpm", addr, "--verbose")
		if code != 0 || !strings.Contains(errOut, "removed the DPS test key a killed verify") {
			t.Fatalf("provision after the kill: exit %d\n%s%s", code, out, errOut)
		}
		if st := readTPMState(t, addr); slices.Contains(st.Persistent, dpsTestKeyHandle) || len(st.Transient) != 0 {
			t.Errorf("after provision: persistent %#x, transient %#x", st.Persistent, st.Transient)
		}
	})

	t.Run("foreign-key-kept", func(t *testing.T) {
		// Killed after persisting; then someone else's tool evicts it and
		// persists its own key there. The journal names station's key: the
		// other one stays.
		addr := provision("KILLV-2")
		killVerifyAfterPersist(t, l, "KILLV-2", addr)
		evictAt(t, addr, dpsTestKeyHandle)
		foreign := persistForeignKey(t, addr, dpsTestKeyHandle)
		out, errOut, code := l.run("verify", "--serial", "KILLV-2", "--tpm", addr)
		if code != 0 || !strings.Contains(out, "0x81000100 already holds a key, left untouched") {
			t.Fatalf("verify with a foreign key at 0x81000100: exit %d\n%s%s", code, out, errOut)
		}
		if strings.Contains(out, "removed the DPS test key") {
			t.Errorf("verify claims it removed a key:\n%s", out)
		}
		if got := nameAt(t, addr, dpsTestKeyHandle); !bytes.Equal(got, foreign) {
			t.Fatalf("the foreign key at 0x81000100 was replaced or removed")
		}
		if pers := readTPMState(t, addr).Persistent; slices.Contains(pers, dpsTestKeyHandle+1) {
			t.Errorf("verify's own key left at 0x81000101: %#x", pers)
		}
	})

	t.Run("wrong-fixture", func(t *testing.T) {
		a := provision("FIX-A")
		provision("FIX-B")
		out, errOut, code := l.run("verify", "--serial", "FIX-B", "--tpm", a)
		if code != 1 {
			t.Fatalf("verify FIX-B on FIX-A's TPM: exit %d, want 1\n%s%s", code, out, errOut)
		}
		if !strings.Contains(out, "this TPM holds the EK of unit FIX-A, not FIX-B") {
			t.Errorf("no wrong-fixture message:\n%s%s", out, errOut)
		}
		if strings.Contains(out+errOut, "TPM failure") || strings.Contains(out, "DPS TPM attestation fails") {
			t.Errorf("wrong fixture reported as a TPM failure:\n%s%s", out, errOut)
		}
		js, _, _ := l.run("-o", "json", "verify", "--serial", "FIX-B", "--tpm", a)
		if !strings.Contains(js, `"error":"this TPM holds the EK of unit FIX-A, not FIX-B"`) {
			t.Errorf("-o json: %s", js)
		}
	})
}
