package flash

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/bundletest"
	"github.com/factory-id/station/internal/hint"
)

func openOne(t *testing.T, spec string, cfg configs.Flash, nv NVDevice) Target {
	t.Helper()
	ts, err := Open(spec, cfg, nv)
	if err != nil {
		t.Fatalf("Open(%q): %v", spec, err)
	}
	if len(ts) != 1 {
		t.Fatalf("Open(%q): %d targets", spec, len(ts))
	}
	return ts[0]
}

func TestDirWriteReadBack(t *testing.T) {
	f := newFixture(t)
	root := t.TempDir()
	tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
	j := f.symJob(t, "SN-0100", bytes.Repeat([]byte{0x42}, 32))
	res, err := tg.Write(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if res.Detail["bundle_digest"] != j.Bundle.DigestHex() || res.Detail["firmware_sha256"] != f.fw.SHA256 {
		t.Errorf("detail: %v", res.Detail)
	}
	for _, v := range res.Detail {
		bundletest.AssertNoSecret(t, v, j.Bundle.SymmetricKey)
	}
	fw, _ := os.ReadFile(filepath.Join(root, DirFirmware))
	if !bytes.Equal(fw, bundletest.Firmware) {
		t.Error("firmware on the unit differs")
	}
	img, _ := os.ReadFile(filepath.Join(root, DirImage))
	if _, err := credbundle.VerifyBundle(img, f.Key.Public()); err != nil {
		t.Errorf("the written image does not verify: %v", err)
	}
	fb, err := ReadFolder(filepath.Join(root, DirBundle))
	if err != nil {
		t.Fatal(err)
	}
	if err := fb.Verify(f.Key.Public()); err != nil {
		t.Errorf("the written folder does not verify: %v", err)
	}
	for name, want := range map[string]os.FileMode{
		DirImage: 0o600, filepath.Join(DirBundle, credbundle.FileSymmetricKey): 0o600,
		filepath.Join(DirBundle, credbundle.FileCert): 0o644, DirFirmware: 0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	// No temporary file is left behind.
	for _, d := range []string{root, filepath.Join(root, DirBundle)} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("left over: %s", e.Name())
			}
		}
	}
	j.StationKey = f.Key.Public()
	if err := tg.ReadBack(context.Background(), j); err != nil {
		t.Errorf("ReadBack: %v", err)
	}
	// Re-running provision on the same unit rewrites it.
	j2 := f.job(t, "SN-0100")
	if _, err := tg.Write(context.Background(), j2); err != nil {
		t.Fatalf("rewrite for the same unit: %v", err)
	}
	// ... and the key file of the earlier bundle is gone from the folder.
	if _, err := os.Stat(filepath.Join(root, DirBundle, credbundle.FileSymmetricKey)); !os.IsNotExist(err) {
		t.Errorf("stale key file left: %v", err)
	}
	if err := tg.ReadBack(context.Background(), j2); err != nil {
		t.Errorf("ReadBack after rewrite: %v", err)
	}
	// The QA check against the earlier bundle fails.
	if err := tg.ReadBack(context.Background(), j); !errors.Is(err, ErrReadback) {
		t.Errorf("ReadBack against a replaced bundle: %v", err)
	}
}

func TestDirOtherUnit(t *testing.T) {
	f := newFixture(t)
	root := t.TempDir()
	tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
	if _, err := tg.Write(context.Background(), f.job(t, "SN-A")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(root, DirImage))
	jb := f.job(t, "SN-B")
	_, err := tg.Write(context.Background(), jb)
	if !errors.Is(err, ErrOtherUnit) || !strings.Contains(err.Error(), "SN-A") {
		t.Fatalf("got %v, want ErrOtherUnit naming SN-A", err)
	}
	after, _ := os.ReadFile(filepath.Join(root, DirImage))
	if !bytes.Equal(before, after) {
		t.Fatal("the refused write changed the target")
	}
	// Only the folder form left (image deleted): still recognised.
	os.Remove(filepath.Join(root, DirImage))
	if _, err := tg.Write(context.Background(), jb); !errors.Is(err, ErrOtherUnit) {
		t.Fatalf("folder only: got %v, want ErrOtherUnit", err)
	}
	jb.Force = true
	if _, err := tg.Write(context.Background(), jb); err != nil {
		t.Fatalf("forced: %v", err)
	}
	if err := tg.ReadBack(context.Background(), jb); err != nil {
		t.Fatal(err)
	}
}

// A medium that does not keep what was written is caught at the write.
func TestDirReadbackMismatch(t *testing.T) {
	f := newFixture(t)
	for _, file := range []string{DirFirmware, DirImage, filepath.Join(DirBundle, credbundle.FileManifest), filepath.Join(DirBundle, credbundle.FileChain)} {
		t.Run(file, func(t *testing.T) {
			root := t.TempDir()
			tg := openOne(t, "dir:"+root, configs.Flash{}, nil).(*dirTarget)
			tg.beforeCompare = func(root string) {
				p := filepath.Join(root, file)
				b, _ := os.ReadFile(p)
				b[len(b)/2] ^= 0x10
				os.WriteFile(p, b, 0o644)
			}
			if _, err := tg.Write(context.Background(), f.job(t, "SN-C")); !errors.Is(err, ErrReadback) {
				t.Fatalf("got %v, want ErrReadback", err)
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		root := t.TempDir()
		tg := openOne(t, "dir:"+root, configs.Flash{}, nil).(*dirTarget)
		tg.beforeCompare = func(root string) { os.Truncate(filepath.Join(root, DirImage), 10) }
		if _, err := tg.Write(context.Background(), f.job(t, "SN-C")); !errors.Is(err, ErrReadback) {
			t.Fatalf("got %v, want ErrReadback", err)
		}
	})
}

// QA verify notices any later change on the unit.
func TestDirReadBackDetectsTampering(t *testing.T) {
	f := newFixture(t)
	j := f.job(t, "SN-D")
	j.StationKey = f.Key.Public()
	for _, tc := range []struct {
		name string
		edit func(root string)
	}{
		{"firmware replaced", func(root string) {
			os.WriteFile(filepath.Join(root, DirFirmware), []byte("other firmware"), 0o644)
		}},
		{"image edited", func(root string) {
			p := filepath.Join(root, DirImage)
			b, _ := os.ReadFile(p)
			b[40] ^= 1
			os.WriteFile(p, b, 0o600)
		}},
		{"manifest edited", func(root string) {
			p := filepath.Join(root, DirBundle, credbundle.FileManifest)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte("0ne00002193"), []byte("0ne00002194"), 1), 0o644)
		}},
		{"image removed", func(root string) { os.Remove(filepath.Join(root, DirImage)) }},
		{"image replaced by another unit's", func(root string) {
			other, _ := f.job(t, "SN-E").Bundle.MarshalBinary()
			os.WriteFile(filepath.Join(root, DirImage), other, 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
			if _, err := tg.Write(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			tc.edit(root)
			if err := tg.ReadBack(context.Background(), j); err == nil {
				t.Fatal("tampering went unnoticed")
			}
		})
	}
}

func TestDirFirmwareCheckedFirst(t *testing.T) {
	f := newFixture(t)
	root := t.TempDir()
	tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
	j := f.job(t, "SN-F")
	// An image that is not the one the bundle names: nothing is written.
	j.Firmware = &Firmware{Data: []byte("rogue"), SHA256: sha256Hex([]byte("rogue"))}
	if _, err := tg.Write(context.Background(), j); !errors.Is(err, ErrFirmwareMismatch) {
		t.Fatalf("got %v, want ErrFirmwareMismatch", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("something was written: %v", ents)
	}
}

func TestDirUnsafe(t *testing.T) {
	f := newFixture(t)
	base := t.TempDir()
	units := filepath.Join(base, "units")
	os.Mkdir(units, 0o755)
	tg := openOne(t, "dir:"+units+"/{serial}", configs.Flash{}, nil)
	good := f.job(t, "SN-G")
	for _, serial := range []string{"; rm -rf /", "$(id)", "`id`", "../../etc", "..", ".", "a/b", "a\nb", "-rf", " SN", "SN G", ""} {
		t.Run(serial, func(t *testing.T) {
			j := good
			j.Serial = serial
			if _, err := tg.Write(context.Background(), j); !errors.Is(err, ErrUnsafeInput) {
				t.Fatalf("got %v, want ErrUnsafeInput", err)
			}
			if err := tg.ReadBack(context.Background(), j); !errors.Is(err, ErrUnsafeInput) {
				t.Fatalf("ReadBack: got %v, want ErrUnsafeInput", err)
			}
		})
	}
	if ents, _ := os.ReadDir(units); len(ents) != 0 {
		t.Fatalf("unsafe serials created %v", ents)
	}
	if ents, _ := os.ReadDir(base); len(ents) != 1 {
		t.Fatalf("unsafe serials wrote beside the folder: %v", ents)
	}
	// The serial is checked against the bundle: a mismatch is refused.
	j := good
	j.Serial = "SN-H"
	if _, err := tg.Write(context.Background(), j); !errors.Is(err, credbundle.ErrBundle) {
		t.Fatalf("serial/bundle mismatch: %v", err)
	}
	// A good serial lands in its own folder.
	if _, err := tg.Write(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(units, "SN-G", DirImage)); err != nil {
		t.Fatal(err)
	}
}

func TestDirPaths(t *testing.T) {
	f := newFixture(t)
	t.Run("spaces and quotes in the path", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "unit storage 'x' $(id)")
		os.Mkdir(root, 0o755)
		tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
		j := f.job(t, "SN-I")
		if _, err := tg.Write(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		if err := tg.ReadBack(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("newline in the path", func(t *testing.T) {
		if _, err := Open("dir:/tmp/a\nb", configs.Flash{}, nil); err == nil {
			t.Fatal("accepted")
		}
	})
	t.Run("not mounted", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "mnt-unit")
		tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
		if _, err := tg.Write(context.Background(), f.job(t, "SN-J")); err == nil {
			t.Fatal("wrote to a folder that does not exist")
		}
		if _, err := os.Stat(root); !os.IsNotExist(err) {
			t.Fatal("created the missing mount point")
		}
	})
	t.Run("symlinked bundle folder", func(t *testing.T) {
		root, elsewhere := t.TempDir(), t.TempDir()
		os.Symlink(elsewhere, filepath.Join(root, DirBundle))
		tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
		if _, err := tg.Write(context.Background(), f.job(t, "SN-K")); !errors.Is(err, ErrUnsafeInput) {
			t.Fatalf("got %v, want ErrUnsafeInput", err)
		}
		if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
			t.Fatal("wrote through the symlink")
		}
	})
	t.Run("symlinked image is replaced not followed", func(t *testing.T) {
		root := t.TempDir()
		victim := filepath.Join(t.TempDir(), "victim")
		os.WriteFile(victim, []byte("keep me"), 0o644)
		os.Symlink(victim, filepath.Join(root, DirImage))
		tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
		if _, err := tg.Write(context.Background(), f.job(t, "SN-L")); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(victim); string(b) != "keep me" {
			t.Fatal("the write went through the symlink")
		}
	})
	t.Run("symlinked per-unit root", func(t *testing.T) {
		units, elsewhere := t.TempDir(), t.TempDir()
		os.Symlink(elsewhere, filepath.Join(units, "SN-M"))
		tg := openOne(t, "dir:"+units+"/{serial}", configs.Flash{}, nil)
		if _, err := tg.Write(context.Background(), f.job(t, "SN-M")); !errors.Is(err, ErrUnsafeInput) {
			t.Fatalf("got %v, want ErrUnsafeInput", err)
		}
	})
}

func TestOpenSpecs(t *testing.T) {
	tools := map[string]configs.FlashTool{"esp": {Command: "/bin/true", Args: []string{"{port}"}, Port: "/dev/ttyUSB0"}}
	cfg := configs.Flash{Tools: tools}
	for _, tc := range []struct {
		spec  string
		names []string
	}{
		{"dir:/mnt/unit", []string{"dir:/mnt/unit"}},
		{"dir:/mnt/unit, exec:esp", []string{"dir:/mnt/unit", "exec:esp"}},
		{"exec:esp@/dev/ttyUSB3", []string{"exec:esp@/dev/ttyUSB3"}},
		{"dir:/a/{serial}", []string{"dir:/a/{serial}"}},
	} {
		ts, err := Open(tc.spec, cfg, nil)
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		for i, tg := range ts {
			if tg.Name() != tc.names[i] {
				t.Errorf("%q: target %d named %q", tc.spec, i, tg.Name())
			}
		}
	}
	for _, spec := range []string{"", "dir:", "exec:nope", "tpm-nv", "tpm-nv:0x1", "ftp:x", "dir:/a,dir:/a", "dir:/a/{port}", "exec:esp@-rf", "dir:/a/{serial}/b"} {
		_, err := Open(spec, cfg, nil)
		var ce *configs.Error
		if !errors.As(err, &ce) {
			t.Errorf("%q: got %v, want a *configs.Error", spec, err)
		}
	}
}

func TestLoadFirmware(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.bin")
	os.WriteFile(p, bundletest.Firmware, 0o644)
	fw, err := LoadFirmware(p, strings.ToUpper(bundletest.FirmwareSHA()))
	if err != nil {
		t.Fatal(err)
	}
	// The bytes checked are the bytes kept: changing the file afterwards
	// changes nothing that gets written.
	os.WriteFile(p, []byte("swapped after the check"), 0o644)
	if !bytes.Equal(fw.Data, bundletest.Firmware) {
		t.Fatal("firmware data changed with the file")
	}
	_, err = LoadFirmware(p, bundletest.FirmwareSHA())
	if !errors.Is(err, ErrFirmwareMismatch) {
		t.Fatalf("got %v, want ErrFirmwareMismatch", err)
	}
	if hint.Of(err) == "" {
		t.Error("no hint")
	}
	if _, err := LoadFirmware(p, "xyz"); !errors.Is(err, ErrFirmwareMismatch) {
		t.Errorf("bad hash: %v", err)
	}
	if _, err := LoadFirmware(filepath.Join(dir, "missing"), bundletest.FirmwareSHA()); err == nil || errors.Is(err, ErrFirmwareMismatch) {
		t.Errorf("missing file: %v", err)
	}
}

// QA verify works from the record alone (serial, digest, certificate).
func TestReadBackFromRecord(t *testing.T) {
	f := newFixture(t)
	root := t.TempDir()
	tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
	j := f.job(t, "SN-0400")
	if _, err := tg.Write(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	exp, err := credbundle.Expected(credbundle.Recorded{Serial: "SN-0400", Digest: j.Bundle.DigestHex(), CertDER: j.Bundle.CertDER()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.ReadBack(context.Background(), Job{Serial: "SN-0400", Bundle: exp, StationKey: f.Key.Public()}); err != nil {
		t.Fatal(err)
	}
	other, _ := credbundle.Expected(credbundle.Recorded{Serial: "SN-0400", Digest: f.job(t, "SN-0400").Bundle.DigestHex(), CertDER: j.Bundle.CertDER()})
	if err := tg.ReadBack(context.Background(), Job{Serial: "SN-0400", Bundle: other}); !errors.Is(err, ErrReadback) {
		t.Fatalf("another digest: %v", err)
	}
	if _, err := tg.Write(context.Background(), Job{Serial: "SN-0400", Bundle: exp, Firmware: f.fw}); err == nil {
		t.Fatal("an credbundle.Expected bundle was written")
	}
}

func TestDirDamagedBundles(t *testing.T) {
	f := newFixture(t)
	root := t.TempDir()
	tg := openOne(t, "dir:"+root, configs.Flash{}, nil)
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0700")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, DirImage)
	b, _ := os.ReadFile(p)
	b[len(b)-20] ^= 0xff
	os.WriteFile(p, b, 0o600)
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0701")); !errors.Is(err, ErrOtherUnit) {
		t.Fatalf("damaged bundle of another unit: %v, want ErrOtherUnit", err)
	}
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0700")); err != nil {
		t.Fatalf("the same unit's damaged bundle: %v", err)
	}
	// Garbage that names no unit is replaced.
	os.WriteFile(p, []byte("garbage"), 0o600)
	os.Remove(filepath.Join(root, DirBundle, credbundle.FileManifest))
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0701")); err != nil {
		t.Fatalf("garbage: %v", err)
	}
}

func TestDirSymlinkedOperatorRoot(t *testing.T) {
	f := newFixture(t)
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "unit")
	os.Symlink(real, link)
	tg := openOne(t, "dir:"+link, configs.Flash{}, nil)
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0702")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(real, DirImage)); err != nil {
		t.Fatal(err)
	}
}

// The dir target writes the key file 0600 beside the rest, reads it all
// back, and a later version 1 bundle leaves no key file or device.json of
// the earlier one behind.
func TestDirV2(t *testing.T) {
	f := newFixture(t)
	dk := bundletest.NewDeviceKey(t)
	mnt := t.TempDir()
	targets, err := Open("dir:"+mnt, configs.Flash{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := Job{Serial: "SN-0005", Firmware: f.fw, Bundle: bundletest.Signed(t, f.PKI.TPMKeyBundle(t, "SN-0005", &dk.PublicKey), f.Key)}
	if _, err := targets[0].Write(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if err := targets[0].ReadBack(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{credbundle.FileTPMKey: 0o600, credbundle.FileDevice: 0o644} {
		fi, err := os.Stat(filepath.Join(mnt, DirBundle, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s written %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	fb, err := ReadFolder(filepath.Join(mnt, DirBundle))
	if err != nil || fb.Verify(f.Key.Public()) != nil {
		t.Fatalf("the written folder: %v", err)
	}
	j1 := Job{Serial: "SN-0005", Firmware: f.fw, Bundle: bundletest.Signed(t, f.PKI.BaseBundle(t, "SN-0005"), f.Key)}
	if _, err := targets[0].Write(context.Background(), j1); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{credbundle.FileTPMKey, credbundle.FileDevice} {
		if _, err := os.Stat(filepath.Join(mnt, DirBundle, name)); !os.IsNotExist(err) {
			t.Errorf("%s of the version 2 bundle left behind: %v", name, err)
		}
	}
}

// HeldBundle finds the bundle a unit holds on a dir: target of a list
// (verify's certificate check reads the unit's own certificate from it),
// through {serial}, and nothing where there is none or it was edited.
func TestHeldBundle(t *testing.T) {
	f := newFixture(t)
	units := t.TempDir()
	tools := configs.Flash{Tools: map[string]configs.FlashTool{"esp": {Command: "/bin/true"}}}
	spec := "exec:esp,dir:" + units + "/{serial}"
	tg := openOne(t, "dir:"+units+"/{serial}", configs.Flash{}, nil)
	j := f.job(t, "SN-0410")
	if _, err := tg.Write(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	b, where := HeldBundle(spec, tools, "SN-0410")
	if b == nil || where != "dir:"+filepath.Join(units, "SN-0410") || !bytes.Equal(b.Digest, j.Bundle.Digest) {
		t.Fatalf("HeldBundle = %v, %q", b, where)
	}
	for name, tc := range map[string]struct{ spec, serial string }{
		"another unit":    {spec, "SN-0411"},
		"no dir target":   {"exec:esp", "SN-0410"},
		"unparsable list": {spec + ",ftp:x", "SN-0410"},
		"unsafe serial":   {spec, "../SN-0410"},
	} {
		if b, where := HeldBundle(tc.spec, tools, tc.serial); b != nil || where != "" {
			t.Errorf("%s: HeldBundle = %v, %q", name, b, where)
		}
	}
	img := filepath.Join(units, "SN-0410", DirImage)
	data, _ := os.ReadFile(img)
	data[len(data)/2] ^= 1
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := HeldBundle(spec, tools, "SN-0410"); b != nil {
		t.Error("an edited image was returned")
	}
}
