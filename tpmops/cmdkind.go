package tpmops

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// CommandKind names a TPM command for statistics and timing models: its
// command code and, for the commands that make a key (CreatePrimary,
// Create, CreateLoaded), the type of the key asked for (TPM_ALG_RSA,
// TPM_ALG_ECC, TPM_ALG_KEYEDHASH...), which decides what the command costs
// on a discrete TPM: seconds for an RSA key, a fraction of one for the rest.
// For a StartAuthSession salted to a key, Alg is that key's type as its
// encrypted salt shows it (RSA: an RSA decryption in the TPM; ECC: an
// ECDH). Alg is zero for every other command.
type CommandKind struct {
	Code tpm2.TPMCC
	Alg  tpm2.TPMAlgID
}

// KindOf reads the kind of a marshalled TPM command. It never fails: bytes
// too short or malformed to say more give what could be read (a zero Code
// for less than a header).
func KindOf(cmd []byte) CommandKind {
	if len(cmd) < 10 {
		return CommandKind{}
	}
	k := CommandKind{Code: tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10]))}
	switch k.Code {
	case tpm2.TPMCCCreatePrimary, tpm2.TPMCCCreate, tpm2.TPMCCCreateLoaded:
		k.Alg = createdType(cmd)
	case tpm2.TPMCCStartAuthSession:
		k.Alg = saltType(cmd)
	}
	return k
}

// saltType tells, in a StartAuthSession command without an authorization
// area, whether its salt is encrypted to an RSA key (a 2048-bit or larger
// OAEP ciphertext) or an ECC one (a TPMS_ECC_POINT, at most 136 bytes):
// header (10), tpmKey and bind (8), nonceCaller (TPM2B), encryptedSalt
// (TPM2B). Zero for an unsalted session or bytes it cannot read.
func saltType(cmd []byte) tpm2.TPMAlgID {
	if binary.BigEndian.Uint16(cmd[0:2]) != uint16(tpm2.TPMSTNoSessions) || len(cmd) < 20 {
		return 0
	}
	off := 20 + int(binary.BigEndian.Uint16(cmd[18:20])) // nonceCaller
	if len(cmd) < off+2 {
		return 0
	}
	switch n := int(binary.BigEndian.Uint16(cmd[off : off+2])); {
	case n == 0:
		return 0
	case n >= 256:
		return tpm2.TPMAlgRSA
	default:
		return tpm2.TPMAlgECC
	}
}

// createdType reads the type of inPublic in a CreatePrimary, Create or
// CreateLoaded command: header (10), one handle (4), the authorization
// area (its size, then that many bytes), inSensitive (TPM2B), inPublic
// (TPM2B: size, then TPMT_PUBLIC, which starts with its type). Zero when
// the command is too short or carries no authorization area.
func createdType(cmd []byte) tpm2.TPMAlgID {
	if binary.BigEndian.Uint16(cmd[0:2]) != uint16(tpm2.TPMSTSessions) {
		return 0
	}
	off := 14
	if len(cmd) < off+4 {
		return 0
	}
	off += 4 + int(binary.BigEndian.Uint32(cmd[off:off+4]))
	if off < 18 || len(cmd) < off+2 {
		return 0
	}
	off += 2 + int(binary.BigEndian.Uint16(cmd[off:off+2])) // inSensitive
	if len(cmd) < off+4 {
		return 0
	}
	return tpm2.TPMAlgID(binary.BigEndian.Uint16(cmd[off+2 : off+4])) // inPublic.size, inPublic.type
}

// commandNames names the commands station sends (TPM 2.0 Library, Part 3).
var commandNames = map[tpm2.TPMCC]string{
	tpm2.TPMCCStartup:                   "Startup",
	tpm2.TPMCCShutdown:                  "Shutdown",
	tpm2.TPMCCGetCapability:             "GetCapability",
	tpm2.TPMCCGetRandom:                 "GetRandom",
	tpm2.TPMCCReadPublic:                "ReadPublic",
	tpm2.TPMCCCreatePrimary:             "CreatePrimary",
	tpm2.TPMCCCreate:                    "Create",
	tpm2.TPMCCCreateLoaded:              "CreateLoaded",
	tpm2.TPMCCLoad:                      "Load",
	tpm2.TPMCCLoadExternal:              "LoadExternal",
	tpm2.TPMCCImport:                    "Import",
	tpm2.TPMCCFlushContext:              "FlushContext",
	tpm2.TPMCCEvictControl:              "EvictControl",
	tpm2.TPMCCNVDefineSpace:             "NV_DefineSpace",
	tpm2.TPMCCNVUndefineSpace:           "NV_UndefineSpace",
	tpm2.TPMCCNVWrite:                   "NV_Write",
	tpm2.TPMCCNVWriteLock:               "NV_WriteLock",
	tpm2.TPMCCNVRead:                    "NV_Read",
	tpm2.TPMCCNVReadPublic:              "NV_ReadPublic",
	tpm2.TPMCCHierarchyChanegAuth:       "HierarchyChangeAuth", // sic: go-tpm spells it Chaneg
	tpm2.TPMCCDictionaryAttackLockReset: "DictionaryAttackLockReset",
	tpm2.TPMCCSign:                      "Sign",
	tpm2.TPMCCMAC:                       "HMAC", // TPM2_HMAC and TPM2_MAC share 0x155
	tpm2.TPMCCUnseal:                    "Unseal",
	tpm2.TPMCCStartAuthSession:          "StartAuthSession",
	tpm2.TPMCCPolicySecret:              "PolicySecret",
	tpm2.TPMCCPolicyGetDigest:           "PolicyGetDigest",
	tpm2.TPMCCActivateCredential:        "ActivateCredential",
	tpm2.TPMCCMakeCredential:            "MakeCredential",
	tpm2.TPMCCPCRRead:                   "PCR_Read",
	tpm2.TPMCCClear:                     "Clear",
}

var algNames = map[tpm2.TPMAlgID]string{
	tpm2.TPMAlgRSA:       "RSA",
	tpm2.TPMAlgECC:       "ECC",
	tpm2.TPMAlgKeyedHash: "KEYEDHASH",
	tpm2.TPMAlgSymCipher: "SYMCIPHER",
}

// String gives "CreatePrimary(RSA)", "NV_Write", "CC 0x0000019a".
func (k CommandKind) String() string {
	name, ok := commandNames[k.Code]
	if !ok {
		name = fmt.Sprintf("CC %#08x", uint32(k.Code))
	}
	if k.Alg == 0 {
		return name
	}
	alg, ok := algNames[k.Alg]
	if !ok {
		alg = fmt.Sprintf("alg %#04x", uint16(k.Alg))
	}
	return name + "(" + alg + ")"
}

// CreatePrimaryRSA is the kind of command an RSA primary key costs: key
// generation, seconds on a discrete TPM.
var CreatePrimaryRSA = CommandKind{Code: tpm2.TPMCCCreatePrimary, Alg: tpm2.TPMAlgRSA}
