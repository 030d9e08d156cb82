#!/bin/sh
# Installs honcho (PyPI) into target/honcho-venv for tests/it/procfile.rs, which runs honcho and
# tend on the same Procfile and .env and compares what each process sees. Idempotent: a venv
# that already holds the pinned version is reused, with no network. The version is pinned
# because README "For Procfile users" lists honcho's readings of tricky .env lines, and the
# test asserts them.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
version=2.0.0
venv="$root/target/honcho-venv"

if [ -x "$venv/bin/honcho" ] && [ "$("$venv/bin/honcho" --version 2>/dev/null)" = "honcho $version" ]; then
  exit 0
fi

# Debian splits venv (and its ensurepip) out of python3.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q python3 python3-venv
fi

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "honcho==$version"
"$venv/bin/honcho" --version
