package tpmops

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
)

func TestNVRoundTrip(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		bufMax, err := e.tpm.nvBufferMax()
		if err != nil {
			t.Fatal(err)
		}
		max, err := e.tpm.NVMaxSize()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: NV buffer max %d, NV index max %d", e.name, bufMax, max)
		big := min(max, 2*bufMax+17) // more than one chunk
		if big <= bufMax {
			t.Fatalf("cannot test chunking: index max %d <= buffer max %d", max, bufMax)
		}
		const idx = 0x01500010
		if _, err := e.tpm.NVRead(idx); !errors.Is(err, ErrHandleEmpty) {
			t.Fatalf("NVRead of undefined index: %v, want ErrHandleEmpty", err)
		}
		for _, tc := range []struct {
			name string
			size int
			lock bool
		}{
			{"small", 100, false},
			{"rewrite-same-size", 100, false},
			{"resize-multi-chunk", big, false},
			{"locked", big, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				data := make([]byte, tc.size)
				rand.Read(data)
				if err := e.tpm.NVDefineWrite(idx, data, nil, NVAttrs{WriteLock: tc.lock}); err != nil {
					t.Fatal(err)
				}
				got, err := e.tpm.NVRead(idx)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("read back %d bytes differ from the %d written", len(got), len(data))
				}
				info, err := e.tpm.NVPublic(idx)
				if err != nil {
					t.Fatal(err)
				}
				if info.Size != tc.size || !info.Attrs.Written || info.Attrs.WriteLocked != tc.lock {
					t.Fatalf("NV public = %+v", info)
				}
				if tc.lock {
					// Same data again: accepted (idempotent); other data: refused.
					if err := e.tpm.NVDefineWrite(idx, data, nil, NVAttrs{WriteLock: true}); err != nil {
						t.Fatalf("rewriting identical data to a locked index: %v", err)
					}
					other := bytes.Clone(data)
					other[0] ^= 1
					if err := e.tpm.NVDefineWrite(idx, other, nil, NVAttrs{WriteLock: true}); err == nil {
						t.Fatal("a write-locked index was rewritten")
					}
					if got, _ := e.tpm.NVRead(idx); !bytes.Equal(got, data) {
						t.Fatal("locked index contents changed")
					}
				}
			})
		}
		if err := e.tpm.NVDefineWrite(idx, make([]byte, max+1), nil, NVAttrs{}); err == nil {
			t.Fatal("an oversize write was accepted")
		}
	})
}

func TestNVForeignIndexRefused(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		// The EK certificate's index (platform-written) is not ours to write.
		cert := testEKCertDER(t)
		if err := e.tpm.ProvisionEKCert(RSA2048, cert); err != nil && e.sw == nil {
			t.Fatal(err)
		}
		if err := e.tpm.NVDefineWrite(0x01C00002, []byte("x"), nil, NVAttrs{}); !errors.Is(err, ErrForeignKey) {
			t.Fatalf("writing the EK certificate index: %v, want ErrForeignKey", err)
		}
	})
}
