package tpmops

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// property reads one TPM_PT property.
func (t *TPM) property(p tpm2.TPMPT) (uint32, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(p),
		PropertyCount: 1,
	}.Execute(t.tr)
	if err != nil {
		return 0, fmt.Errorf("reading TPM property %#x: %w", uint32(p), classify(err))
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, fmt.Errorf("decoding TPM property %#x: %w", uint32(p), err)
	}
	for _, tp := range props.TPMProperty {
		if tp.Property == p {
			return tp.Value, nil
		}
	}
	return 0, fmt.Errorf("TPM does not report property %#x", uint32(p))
}

// handles lists the handles of one type (the top byte of the handle).
func (t *TPM) handles(ht tpm2.TPMHT) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := uint32(ht) << 24
	for {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      next,
			PropertyCount: 64,
		}.Execute(t.tr)
		if err != nil {
			return nil, fmt.Errorf("listing handles %#02x: %w", uint8(ht), classify(err))
		}
		hl, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("decoding handle list: %w", err)
		}
		for _, h := range hl.Handle {
			if uint32(h)>>24 != uint32(ht) {
				return out, nil
			}
			out = append(out, h)
		}
		if !rsp.MoreData || len(hl.Handle) == 0 {
			return out, nil
		}
		next = uint32(hl.Handle[len(hl.Handle)-1]) + 1
	}
}

// Transients lists what is loaded and would leak without a flush: transient
// objects (0x80...) and sessions (HMAC 0x02..., policy/saved 0x03...).
// A TPM left by this package after any call has none that the call created.
func (t *TPM) Transients() ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		hs, err := t.handles(ht)
		if err != nil {
			return nil, err
		}
		out = append(out, hs...)
	}
	return out, nil
}

// Persistent lists the persistent object handles (0x81...).
func (t *TPM) Persistent() ([]tpm2.TPMHandle, error) {
	return t.handles(tpm2.TPMHTPersistent)
}
