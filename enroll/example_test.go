package enroll_test

import (
	"fmt"
	"os"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/store"
)

// The individual enrollment of a TPM unit, as dps-individual writes it.
func ExampleProfile_Individual() {
	ek := []byte{0, 4, 't', 'p', 'm', '!'} // a (tiny) TPM2B_PUBLIC
	u := &store.Unit{Serial: "SN-0001", Status: store.StatusProvisioned, Attestation: "tpm",
		RegistrationID: enroll.RegistrationID(ek), EKPublic: ek}
	p := &enroll.Profile{IoTHubs: []string{"hub1.azure-devices.net"}, AllocationPolicy: "hashed", Line: "line1", FirmwareVersion: "3.1.0"}
	e, err := p.Individual(u, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := enroll.Marshal(e)
	os.Stdout.Write(b)
	// Output:
	// {
	//   "registrationId": "5c357g3hqgi6ce5zh65llpg4pd4sh3l5y2bnqkv5crbviyrqw5sq",
	//   "attestation": {
	//     "type": "tpm",
	//     "tpm": {
	//       "endorsementKey": "AAR0cG0h"
	//     }
	//   },
	//   "iotHubs": [
	//     "hub1.azure-devices.net"
	//   ],
	//   "allocationPolicy": "hashed",
	//   "initialTwin": {
	//     "tags": {
	//       "firmwareVersion": "3.1.0",
	//       "line": "line1",
	//       "serial": "SN-0001"
	//     }
	//   },
	//   "provisioningStatus": "enabled"
	// }
}
