// Package agent keeps the line intermediate's key unlocked in one long-lived
// process (`station agent`) and issues device certificates for provision
// processes over a Unix socket, as ssh-agent does for SSH keys. A test
// executive that runs `station provision` once per unit then pays the key's
// unlock (a PBKDF2 of 600,000 rounds, or an HSM login) once per shift, not
// once per unit, and no provision process ever holds the key or its password.
//
// What the agent guarantees:
//
//   - It never hands out the key, and it signs nothing but device
//     certificates under certgen's issuance policy, run inside the agent:
//     the client sends the CSR (signed by the unit's TPM-resident device key)
//     with the registration ID and unit serial, and gets back the
//     certificate. The policy's parameters (pki.validity, pki.warehouse,
//     pki.san_uri, pki.max_issued) are the agent's own, from the
//     configuration it was started with, never the client's; a client whose
//     configuration differs is refused at Dial (ErrMismatch). So a process
//     that reaches the socket gets at most what the policy allows: a
//     clientAuth leaf bound to a serial, for a key whose possession its CSR
//     proves; never a CA certificate, never a signature over chosen bytes.
//   - pki.max_issued holds within the agent too: it counts its own
//     signatures and refuses past the ceiling, whatever count a client
//     reports (a client reserves its slot in the station database first, as
//     without the agent).
//   - Only the station's user reaches it: the socket is 0600 in a folder
//     that must be 0700 and the user's own, and every connection's peer
//     credentials (SO_PEERCRED) must carry the agent's uid, on both ends.
//   - It lives until SIGTERM/SIGINT or an idle timeout, and removes its
//     socket when it stops.
//
// What it does not do: it keeps no database and writes no audit record (the
// provision process records and audits each certificate, as without the
// agent); it logs one line per request on its standard error. The provision
// process checks every certificate it gets back (the chain up to the pinned
// root for clientAuth, the key, the registration ID) before recording it.
//
// The protocol is one JSON request and one JSON response per connection.
package agent
