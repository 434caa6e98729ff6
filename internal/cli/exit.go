package cli

// Exit codes of the contract. The comment after each code is its row of the
// README's exit-code table (cmd's TestExitCodesMatchREADME compares them).
const (
	ExitOK          = 0 // success
	ExitFailed      = 1 // a provisioning step or a verify check failed
	ExitUsage       = 2 // usage or configuration error
	ExitPolicy      = 3 // refused by policy: duplicate EK or serial, untrusted EK certificate, unit owned by someone else, firmware hash mismatch, TPM in dictionary-attack lockout (set it aside)
	ExitIntegrity   = 4 // integrity violation: audit chain, checkpoint or export signature does not verify
	ExitEnvironment = 5 // environment: TPM, HSM or database unreachable, busy (out of object or session slots) or locked (retry)
)
