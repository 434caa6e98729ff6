#!/usr/bin/env bash
# Runs software TPMs on loopback for trying station by hand.
#
#   scripts/swtpm.sh start N DIR   manufacture N TPMs (EK + EK certificate signed by a
#                                  private CA in DIR/ca) and start them; prints their addresses
#   scripts/swtpm.sh stop DIR      TPM2_Shutdown(CLEAR) each one, then stop it by pid
#
# Instance i listens on 127.0.0.1:P (TPM commands, --tpm swtpm://127.0.0.1:P) and P+1 (control),
# P = ${SWTPM_BASE_PORT:-2321} + 2*i. Trust DIR/ca/swtpm-localca-rootca-cert.pem and
# DIR/ca/issuercert.pem as the TPM vendor roots (tpm.vendor_roots: DIR/ca/vendor-roots/).
# When a port is taken, start says which one and exits 1: choose others with SWTPM_BASE_PORT.
set -euo pipefail

die() { echo "swtpm.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 not installed (apt-get install swtpm swtpm-tools tpm2-tools gnutls-bin)"; }

# listening PORT: something accepts connections on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# in_use I PORT [TAKEN]: stop, naming the port of instance I that another process holds.
in_use() {
  die "tpm$1: port ${3:-$2 or $(($2 + 1))} on 127.0.0.1 is in use (by another swtpm or program):" \
    "stop it, or choose other ports with SWTPM_BASE_PORT=P (TPM i uses P+2i and P+2i+1; now P=${SWTPM_BASE_PORT:-2321})"
}

# check_free I PORT: instance I's two ports are free.
check_free() {
  if listening "$2"; then in_use "$1" "$2" "$2"; fi
  if listening $(($2 + 1)); then in_use "$1" "$2" $(($2 + 1)); fi
}

# failed I PORT LOG: say why swtpm could not start instance I.
failed() {
  check_free "$1" "$2"
  grep -q "Address already in use" "$3" 2>/dev/null && in_use "$1" "$2"
  die "tpm$1: swtpm did not start on port $2: $(tail -n 3 "$3" 2>/dev/null | tr '\n' ' ')(see $3)"
}

# running ST: the swtpm of state folder ST runs.
running() { [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null; }

start() {
  local n=$1 dir=$2 base=${SWTPM_BASE_PORT:-2321}
  [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "N must be a positive number"
  [[ $base =~ ^[0-9]+$ && $base -ge 1 && $((base + 2 * n)) -le 65536 ]] ||
    die "SWTPM_BASE_PORT=$base: want a port number with room for $n TPMs (2 ports each) below 65536"
  [[ $dir != *,* ]] || die "DIR $dir: swtpm cannot use a folder whose path has a comma (its options are comma-separated)"
  need swtpm; need swtpm_setup; need swtpm_localca
  # Every port is checked before anything starts, so a taken one leaves nothing running.
  for ((i = 0; i < n; i++)); do
    running "$dir/tpm$i" || check_free "$i" $((base + 2 * i))
  done
  mkdir -p "$dir/ca"
  dir=$(cd "$dir" && pwd)
  local ca=$dir/ca
  if [ ! -f "$ca/swtpm_setup.conf" ]; then
    cat >"$ca/swtpm-localca.conf" <<CONF
statedir = $ca
signingkey = $ca/signkey.pem
issuercert = $ca/issuercert.pem
certserial = $ca/certserial
CONF
    printf -- '--platform-manufacturer Station-Demo\n--platform-version 2.1\n--platform-model swtpm\n' >"$ca/swtpm-localca.options"
    cat >"$ca/swtpm_setup.conf" <<CONF
create_certs_tool = $(command -v swtpm_localca)
create_certs_tool_config = $ca/swtpm-localca.conf
create_certs_tool_options = $ca/swtpm-localca.options
active_pcr_banks = sha256
CONF
    echo 1 >"$ca/certserial"
  fi
  for ((i = 0; i < n; i++)); do
    local st=$dir/tpm$i port=$((base + 2 * i))
    if running "$st"; then
      echo "tpm$i already running: swtpm://127.0.0.1:$(cat "$st/port")"; continue
    fi
    if [ ! -f "$st/tpm2-00.permall" ]; then
      mkdir -p "$st"
      swtpm_setup --tpm2 --tpm-state "$st" --create-ek-cert --create-platform-cert \
        --config "$ca/swtpm_setup.conf" --logfile "$st/setup.log" >/dev/null ||
        die "swtpm_setup failed for tpm$i (see $st/setup.log)"
    fi
    : >"$st/swtpm.log"
    swtpm socket --tpm2 --tpmstate dir="$st" \
      --server type=tcp,bindaddr=127.0.0.1,port=$port \
      --ctrl type=tcp,bindaddr=127.0.0.1,port=$((port + 1)) \
      --flags startup-clear --daemon --pid file="$st/pid" --log file="$st/swtpm.log" ||
      failed "$i" "$port" "$st/swtpm.log"
    echo "$port" >"$st/port"
    echo "tpm$i: swtpm://127.0.0.1:$port (pid $(cat "$st/pid"))"
  done
  mkdir -p "$ca/vendor-roots"
  cp "$ca/swtpm-localca-rootca-cert.pem" "$ca/issuercert.pem" "$ca/vendor-roots/"
}

stop() {
  local dir=$1 st pid port
  for st in "$dir"/tpm*/; do
    [ -f "$st/pid" ] || continue
    pid=$(cat "$st/pid"); port=$(cat "$st/port")
    if kill -0 "$pid" 2>/dev/null; then
      # An orderly shutdown keeps the dictionary-attack counters from growing.
      if command -v tpm2_shutdown >/dev/null; then
        tpm2_shutdown -T "swtpm:host=127.0.0.1,port=$port" 2>/dev/null ||
          echo "swtpm.sh: TPM2_Shutdown failed on port $port" >&2
      fi
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "stopped $(basename "$st") (pid $pid)"
    fi
    rm -f "$st/pid"
  done
}

case "${1:-}" in
start) [ $# -eq 3 ] || die "usage: $0 start N DIR"; start "$2" "$3" ;;
stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
*) die "usage: $0 start N DIR | stop DIR" ;;
esac
