#!/bin/sh
# Started by frank-kiosk.service: puts the kiosk clerk's password into FRANK_PASSWORD (from
# the unit's systemd credential, unless an EnvironmentFile already set it), then becomes
# `frank counter --kiosk` with the arguments given. The password never appears on a command
# line or in the unit.
set -eu
if [ -z "${FRANK_PASSWORD:-}" ]; then
  cred="${CREDENTIALS_DIRECTORY:?no credentials: start this from frank-kiosk.service}/frank-password"
  FRANK_PASSWORD=$(cat "$cred")
fi
export FRANK_PASSWORD
exec "${FRANK_BIN:-/usr/local/bin/frank}" counter --kiosk "$@"
