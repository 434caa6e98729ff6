package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/fsync"
)

// Names the dir target writes under its folder.
const (
	DirFirmware = "firmware.bin"
	DirBundle   = "station-bundle"     // the folder form
	DirImage    = credbundle.FileImage // the single-file form
)

// dirTarget writes to a mounted unit storage or an image folder.
type dirTarget struct {
	spec string
	path string // checked by configs.Flash.ParseTargets; may hold {serial}
	// beforeCompare, in tests only, plays a medium that does not keep what
	// was written.
	beforeCompare func(root string)
}

func (d *dirTarget) Name() string { return d.spec }

// root expands {serial} (the serial is validated first, so it is one plain
// path component) and checks the folder. Without {serial} the folder must
// already exist: a unit storage that is not mounted must not turn into a
// write to the station's own disk. With it, only the last level is created.
func (d *dirTarget) root(serial string, create bool) (string, error) {
	if err := safeSerial(serial); err != nil {
		return "", err
	}
	p := strings.ReplaceAll(d.path, "{serial}", serial)
	if create && p != d.path {
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("%s: %w", d.spec, err)
		}
	}
	// The operator's own path may be a symbolic link; the level made from
	// unit data may not.
	stat := os.Stat
	if p != d.path {
		stat = os.Lstat
	}
	fi, err := stat(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w (is the unit's storage mounted?)", d.spec, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s: %s is not a folder (symbolic links are not followed): %w", d.spec, p, ErrUnsafeInput)
	}
	return p, nil
}

// dirPlan returns every file the target holds for j: relative path -> bytes.
func dirPlan(j Job) (map[string][]byte, error) {
	img, err := j.Bundle.MarshalBinary()
	if err != nil {
		return nil, err
	}
	folder, err := j.Bundle.Folder()
	if err != nil {
		return nil, err
	}
	plan := map[string][]byte{DirFirmware: j.Firmware.Data, DirImage: img}
	for n, b := range folder {
		plan[filepath.Join(DirBundle, n)] = b
	}
	return plan, nil
}

// existingSerial names the unit whose bundle the target holds: from the
// image's serial record (even if the image is otherwise damaged), else from
// the folder's manifest; "" when neither names one.
func existingSerial(root string) string {
	if data, err := readFileLimited(filepath.Join(root, DirImage), credbundle.MaxImageSize); err == nil {
		if s, ok := credbundle.PeekSerial(data); ok {
			return s
		}
	}
	if data, err := readFileLimited(filepath.Join(root, DirBundle, credbundle.FileManifest), credbundle.MaxImageSize); err == nil {
		if s, ok := credbundle.PeekFolderSerial(data); ok {
			return s
		}
	}
	return ""
}

func (d *dirTarget) Write(_ context.Context, j Job) (Result, error) {
	res := Result{Target: d.spec, Detail: map[string]string{}}
	if err := checkJob(j); err != nil {
		return res, err
	}
	root, err := d.root(j.Serial, true)
	if err != nil {
		return res, err
	}
	if err := otherUnit(j, existingSerial(root), d.spec); err != nil {
		return res, err
	}
	plan, err := dirPlan(j)
	if err != nil {
		return res, err
	}
	bdir := filepath.Join(root, DirBundle)
	if fi, err := os.Lstat(bdir); err == nil && !fi.IsDir() {
		return res, fmt.Errorf("%s: %s is not a folder (symbolic links are not followed): %w", d.spec, bdir, ErrUnsafeInput)
	} else if err != nil {
		if err := os.Mkdir(bdir, 0o755); err != nil {
			return res, fmt.Errorf("%s: %w", d.spec, err)
		}
	}
	// Files of the folder form this bundle does not have (a key file left
	// by an earlier bundle) go first, so the folder never mixes two bundles.
	if ents, err := os.ReadDir(bdir); err == nil {
		for _, e := range ents {
			if _, ok := plan[filepath.Join(DirBundle, e.Name())]; !ok {
				if err := os.Remove(filepath.Join(bdir, e.Name())); err != nil {
					return res, fmt.Errorf("%s: removing stale %s: %w", d.spec, e.Name(), err)
				}
			}
		}
	}
	// Order: firmware, the folder's files with its manifest last, then the
	// single-file image. Each file is atomic; the manifest and the image
	// each commit to everything through the digest.
	folder, _ := j.Bundle.Folder()
	order := []string{DirFirmware}
	for _, n := range credbundle.FolderOrder(folder) {
		order = append(order, filepath.Join(DirBundle, n))
	}
	order = append(order, DirImage)
	for _, rel := range order {
		dir, name := filepath.Split(filepath.Join(root, rel))
		if err := writeAtomic(filepath.Clean(dir), name, plan[rel], credbundle.FileMode(name)); err != nil {
			return res, fmt.Errorf("%s: writing %s: %w", d.spec, rel, err)
		}
	}
	if err := fsync.Dir(root); err != nil {
		return res, fmt.Errorf("%s: %w", d.spec, err)
	}
	if d.beforeCompare != nil {
		d.beforeCompare(root)
	}
	if err := d.compare(root, plan); err != nil {
		return res, err
	}
	img := plan[DirImage]
	sum := sha256.Sum256(img)
	res.Detail["path"] = root
	res.Detail["files"] = fmt.Sprint(len(plan))
	res.Detail["firmware_sha256"] = j.Firmware.SHA256
	res.Detail["image_sha256"] = hex.EncodeToString(sum[:])
	res.Detail["image_size"] = fmt.Sprint(len(img))
	res.Detail["bundle_digest"] = j.Bundle.DigestHex()
	res.Detail["readback"] = "byte-for-byte, all files"
	return res, nil
}

// compare reads every planned file back and compares it byte for byte.
func (d *dirTarget) compare(root string, plan map[string][]byte) error {
	for rel, want := range plan {
		limit := int64(credbundle.MaxImageSize)
		if rel == DirFirmware {
			limit = MaxFirmwareSize
		}
		got, err := readFileLimited(filepath.Join(root, rel), limit)
		if err != nil {
			return fmt.Errorf("%s: reading back %s: %v: %w", d.spec, rel, err, ErrReadback)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s: %s read back differs (%d bytes, wrote %d): %w", d.spec, rel, len(got), len(want), ErrReadback)
		}
	}
	return nil
}

func (d *dirTarget) ReadBack(_ context.Context, j Job) error {
	root, err := d.root(j.Serial, false)
	if err != nil {
		return fmt.Errorf("%w: %w", err, ErrReadback)
	}
	data, err := readFileLimited(filepath.Join(root, DirImage), credbundle.MaxImageSize)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", d.spec, err, ErrReadback)
	}
	img, err := credbundle.ParseImage(data)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", d.spec, DirImage, err)
	}
	if err := checkFound(j, img, d.spec+" "+DirImage); err != nil {
		return err
	}
	folder, err := ReadFolder(filepath.Join(root, DirBundle))
	if err != nil {
		return fmt.Errorf("%s: %s: %w", d.spec, DirBundle, err)
	}
	if !bytes.Equal(folder.Digest, img.Digest) {
		return fmt.Errorf("%s: the bundle folder (%s) and image (%s) differ: %w", d.spec, folder.DigestHex(), img.DigestHex(), ErrReadback)
	}
	fw, err := readFileLimited(filepath.Join(root, DirFirmware), MaxFirmwareSize)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", d.spec, err, ErrReadback)
	}
	want := img.FirmwareSHA256
	if j.Firmware != nil {
		want = j.Firmware.SHA256
	}
	sum := sha256.Sum256(fw)
	if got := hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("%s: firmware on the unit has SHA-256 %s, expected %s: %w", d.spec, got, want, ErrReadback)
	}
	return nil
}

// ReadFolder reads a bundle folder from disk, from the medium (see
// readFileLimited), and parses it (credbundle.ParseFolder). Symbolic links
// and sub-folders are refused.
func ReadFolder(dir string) (*credbundle.Bundle, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range ents {
		if e.Type()&fs.ModeType != 0 {
			return nil, fmt.Errorf("%w: %s in bundle folder is not a regular file", credbundle.ErrBundle, e.Name())
		}
		data, err := readFileLimited(filepath.Join(dir, e.Name()), credbundle.MaxImageSize)
		if err != nil {
			return nil, err
		}
		files[e.Name()] = data
	}
	return credbundle.ParseFolder(files)
}

// HeldBundle reads the bundle a unit holds on the first dir: target of spec
// that has one: its single-file image, parsed (its digest checked, not its
// signature), and the folder it was read from ("dir:/mnt/unit"). It is for
// checks that want what the unit holds rather than the record's copy; nil
// and "" when no dir: target of spec holds one, or spec does not parse.
func HeldBundle(spec string, cfg configs.Flash, serial string) (*credbundle.Bundle, string) {
	parsed, err := cfg.ParseTargets(spec)
	if err != nil {
		return nil, ""
	}
	for _, p := range parsed {
		if p.Kind != configs.TargetDir {
			continue
		}
		d := &dirTarget{spec: p.Spec, path: p.Path}
		root, err := d.root(serial, false)
		if err != nil {
			continue
		}
		data, err := readFileLimited(filepath.Join(root, DirImage), credbundle.MaxImageSize)
		if err != nil {
			continue
		}
		if b, err := credbundle.ParseImage(data); err == nil {
			return b, "dir:" + root
		}
	}
	return nil, ""
}
