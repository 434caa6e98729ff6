#!/usr/bin/env bash
# The line engineer's provisioning script: the steps station takes, done with tpm2-tools and
# OpenSSL's tpm2 provider. It is the reference `make bench` times station against (docs/BENCHMARKS.md),
# not a tool for a line: it keeps the intermediate's key in plaintext, as such scripts do, and checks
# nothing station checks (EK certificate chain, duplicates, escrow, resume).
#
#   scripts/bench/reference.sh SERIAL TCTI ISSUER_CERT ISSUER_KEY CHAIN FIRMWARE UNITDIR LOGDIR
#
# TCTI is a tpm2-tools TCTI (swtpm:host=127.0.0.1,port=P). Steps: EK persisted at 0x81010001 and its
# certificate read from NV 0x01c00002; RSA-2048 SRK persisted at 0x81000001; ECC P-256 device key under
# it persisted at 0x81000010; lockout auth set to a random value; CSR signed in the TPM; leaf issued from
# the intermediate; certificate, chain and firmware copied to UNITDIR and read back (SHA-256); one
# hash-chained line appended to LOGDIR/log.txt; one DPS enrollment JSON line to LOGDIR/enrollments.jsonl.
# Prints the unit's step times (ms) as one line: step=ms ...
set -euo pipefail
[ $# -eq 8 ] || { echo "usage: $0 SERIAL TCTI ISSUER_CERT ISSUER_KEY CHAIN FIRMWARE UNITDIR LOGDIR" >&2; exit 2; }
serial=$1 tcti=$2 icert=$3 ikey=$4 chain=$5 fw=$6 unit=$7 logdir=$8
export TPM2TOOLS_TCTI=$tcti TPM2OPENSSL_TCTI=$tcti
mkdir -p "$logdir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s%N; }
times=() t0=$(now)
mark() { local t; t=$(now); times+=("$1=$(((t - t0) / 1000000))"); t0=$t; }

# EK: persisted (reusing it when already there), certificate from NV.
if ! tpm2_readpublic -c 0x81010001 -o "$work/ek.pub" >/dev/null 2>&1; then
  tpm2_createek -c 0x81010001 -G rsa -u "$work/ek.pub" >/dev/null
fi
tpm2_nvread 0x01c00002 -C o -o "$work/ek.der" >/dev/null 2>&1
tpm2_flushcontext -t >/dev/null
mark ek
# SRK: RSA-2048 storage primary, persisted.
tpm2_createprimary -C o -g sha256 -G rsa2048:null:aes128cfb -c "$work/srk.ctx" >/dev/null
tpm2_evictcontrol -C o -c "$work/srk.ctx" 0x81000001 >/dev/null
tpm2_flushcontext -t >/dev/null # no resource manager on a fixture: free the transient slots
mark srk
# Device key: ECC P-256, sign-only, fixed to this TPM, persisted.
tpm2_create -C 0x81000001 -G ecc256:ecdsa-sha256 -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign' \
  -u "$work/dev.pub" -r "$work/dev.priv" >/dev/null
tpm2_load -C 0x81000001 -u "$work/dev.pub" -r "$work/dev.priv" -c "$work/dev.ctx" >/dev/null
tpm2_evictcontrol -C o -c "$work/dev.ctx" 0x81000010 >/dev/null
tpm2_flushcontext -t >/dev/null
mark device-key
# Ownership: a random lockout auth (kept in a 0600 file next to the log, as such scripts do).
lockout=$(openssl rand -hex 16)
tpm2_changeauth -c lockout "hex:$lockout"
(umask 077; echo "$serial $lockout" >>"$logdir/lockout.txt")
mark ownership
# Certificate: CSR signed in the TPM, leaf from the intermediate.
openssl req -new -provider default -provider tpm2 -propquery '?tpm2.signature' \
  -key handle:0x81000010 -subj "/CN=$serial" -out "$work/csr.pem" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$work/ext"
openssl x509 -req -in "$work/csr.pem" -CA "$icert" -CAkey "$ikey" -CAcreateserial -days 3650 -sha256 \
  -extfile "$work/ext" -out "$work/leaf.pem" 2>/dev/null
mark certificate
# Flash: to the unit's folder, read back.
mkdir -p "$unit"
cp "$work/leaf.pem" "$unit/device.crt"
cp "$chain" "$unit/chain.pem"
cp "$fw" "$unit/firmware.bin"
sync "$unit"
for f in device.crt chain.pem firmware.bin; do
  src=$work/leaf.pem
  [ "$f" = chain.pem ] && src=$chain
  [ "$f" = firmware.bin ] && src=$fw
  [ "$(sha256sum <"$unit/$f")" = "$(sha256sum <"$src")" ] || { echo "$serial: $f read back differs" >&2; exit 1; }
done
mark flash
# Record: a hash-chained log line and a DPS enrollment line.
touch "$logdir/log.txt"
prev=$(tail -n 1 "$logdir/log.txt" | sha256sum | cut -d' ' -f1)
ekhash=$(sha256sum <"$work/ek.der" | cut -d' ' -f1)
certhash=$(openssl x509 -in "$work/leaf.pem" -outform DER | sha256sum | cut -d' ' -f1)
echo "$(date -u +%FT%TZ) $serial ek=$ekhash cert=$certhash prev=$prev" >>"$logdir/log.txt"
ekb64=$(tpm2_readpublic -c 0x81010001 -f tpmt -o "$work/ek.tpmt" >/dev/null && base64 -w0 "$work/ek.tpmt")
printf '{"registrationId":"%s","attestation":{"type":"tpm","tpm":{"endorsementKey":"%s"}},"provisioningStatus":"enabled"}\n' \
  "$serial" "$ekb64" >>"$logdir/enrollments.jsonl"
mark record
echo "${times[*]}"
