package flash_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/flash"
)

// The flash step: firmware checked against the release hash, then written
// with the signed bundle to every target and read back.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "unit-")
	defer os.RemoveAll(dir)
	image := []byte("\x7fELF fake firmware image 1.2.3 \x00\x01\x02\xff")
	os.WriteFile(filepath.Join(dir, "app.bin"), image, 0o644)
	sum := sha256.Sum256(image)

	fw, err := flash.LoadFirmware(filepath.Join(dir, "app.bin"), hex.EncodeToString(sum[:]))
	if err != nil {
		fmt.Println(err)
		return
	}
	img, _ := os.ReadFile("../credbundle/testdata/golden-v1/ecdsa-tpm/station-bundle.bin")
	bundle, _ := credbundle.ParseImage(img) // normally: credbundle.NewBundle, then Sign with the station key
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)

	targets, err := flash.Open("dir:"+mnt, configs.Flash{}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range targets {
		res, err := t.Write(context.Background(), flash.Job{Serial: "SN-GOLD-2", Firmware: fw, Bundle: bundle})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(res.Target == "dir:"+mnt, res.Detail["readback"])
	}
	// Output: true byte-for-byte, all files
}
