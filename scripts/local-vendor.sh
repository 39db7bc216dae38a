#!/usr/bin/env bash
# Sets up a vendor on this machine for trying Frank by hand: a data directory with one account
# and one clerk, then serves it on loopback. Prints the counter command to run in another
# terminal. Usage: scripts/local-vendor.sh [DATA_DIR] [PORT]
set -euo pipefail
data=${1:-./vendor-data}
port=${2:-4433}
frank=${FRANK:-cargo run --release --quiet --}

if [ ! -f "$data/vendor-key.pem" ]; then
  $frank vendor init --data "$data"
  $frank vendor account add --data "$data" --name "Local Post Office" | tee "$data/account.txt"
  FRANK_PASSWORD=${FRANK_PASSWORD:-local-password} \
    $frank vendor clerk add --data "$data" --account 1 --username clerk
fi
fingerprint=$($frank vendor fingerprint --data "$data")
code=$(sed -n 's/^enrollment code.*: //p' "$data/account.txt")
cat <<MSG

In another terminal, run a counter against this vendor (password: ${FRANK_PASSWORD:-local-password}):

  $frank counter --vendor 127.0.0.1:$port --pin $fingerprint \\
      --data ./terminal-data --enroll-code $code --clerk clerk

MSG
exec $frank vendor serve --data "$data" --listen "127.0.0.1:$port"
