#!/usr/bin/env bash
# The virtual printer for demos and manual tests: starts `frank printer emulate` with a known
# control socket and label folder, prints the device to give `frank counter --printer`, and
# how to inject faults. With `send`, sends one control command to a running emulator.
#
# Usage:
#   scripts/demo-printer.sh [LABEL_DIR] [SOCKET]      start (Ctrl-C stops it)
#   scripts/demo-printer.sh send [--socket SOCKET] COMMAND...   e.g. send paper_out_after 500
#
# Commands (docs/PRINTING.md, emulator control protocol): paper_out, paper_in,
# paper_out_after N, cover_open, cover_closed, silent, resume, vanish, status.
# Environment: FRANK (default: cargo run --release --quiet --), PROFILE (default: virtual).
set -euo pipefail

default_socket="${TMPDIR:-/tmp}/frank-printer.sock"

# Sends one line to the control socket and prints the reply, with whichever client exists.
send() {
  local line=$1 sock=$2
  if [ ! -S "$sock" ]; then
    echo "no control socket at $sock (is the emulator running?)" >&2
    return 1
  fi
  if command -v socat >/dev/null 2>&1; then
    printf '%s\n' "$line" | socat -t 2 - "UNIX-CONNECT:$sock"
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$sock" "$line" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
s.shutdown(socket.SHUT_WR)
print(s.makefile().readline(), end="")
PY
  elif command -v nc >/dev/null 2>&1; then
    # OpenBSD netcat: -N closes the socket's write side at the end of input.
    printf '%s\n' "$line" | nc -U -N "$sock"
  else
    echo "need socat, python3 or nc to talk to $sock" >&2
    return 1
  fi
}

if [ "${1:-}" = send ]; then
  shift
  sock=$default_socket
  if [ "${1:-}" = --socket ]; then
    sock=${2:?--socket needs a path}
    shift 2
  fi
  [ $# -ge 1 ] || { echo "usage: $0 send [--socket SOCKET] COMMAND..." >&2; exit 2; }
  send "$*" "$sock"
  exit
fi

out=${1:-./labels}
sock=${2:-$default_socket}
profile=${PROFILE:-virtual}
read -r -a frank <<<"${FRANK:-cargo run --release --quiet --}"

mkdir -p "$out"
device_file=$(mktemp)
"${frank[@]}" printer emulate --profile "$profile" --out "$out" --control "$sock" >"$device_file" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$device_file" "$sock"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# The emulator prints its device path on the first line of stdout once it is up.
for _ in $(seq 600); do
  [ -s "$device_file" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "the emulator did not start" >&2; exit 1; }
  sleep 0.1
done
device=$(head -n 1 "$device_file")
[ -n "$device" ] || { echo "the emulator did not report its device" >&2; exit 1; }

cat <<MSG

Virtual printer ($profile) on $device; labels are saved as PNGs in $out.
Point a counter at it:

  frank counter ... --printer $device --profile $profile

Inject faults from another terminal (one command per line on $sock):

  $0 send --socket $sock paper_out
  $0 send --socket $sock paper_in
  $0 send --socket $sock paper_out_after 2000   # out once 2000 bytes were received in all
  $0 send --socket $sock cover_open
  $0 send --socket $sock status
  printf 'paper_out\\n' | socat - UNIX-CONNECT:$sock     # the same, by hand

Ctrl-C stops the printer.
MSG
wait "$pid"
