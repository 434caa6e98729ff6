package cmd

import (
	"encoding/json"

	"github.com/factory-id/station/store"
)

// parseUnitShow reads `station units show -o json` into the unit record it
// prints (its TPM handles are "0x81000001" strings there).
func parseUnitShow(js string) (*store.Unit, error) {
	d := unitDocument{Unit: &store.Unit{}}
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		return nil, err
	}
	d.Unit.SRKHandle, d.Unit.DeviceKeyHandle = uint32(d.SRKHandle), uint32(d.DeviceKeyHandle)
	return d.Unit, nil
}
