#!/bin/sh
# Runs the dashboard's browser tests: installs Debian's chromium and the npm packages when they
# are missing, builds tend (unless TEND_BIN names a binary), then runs node's test runner.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi

cd "$here"
# npm ci leaves node_modules/.package-lock.json; a lockfile newer than it means stale packages.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

if [ -z "${TEND_BIN:-}" ]; then
  (cd "$root" && cargo build --quiet)
  TEND_BIN="$root/target/debug/tend"
  export TEND_BIN
fi

exec node --test --test-concurrency=1 "$@" "$here"/*.test.js
