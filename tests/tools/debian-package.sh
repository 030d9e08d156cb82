#!/bin/sh
# Usage: debian-package.sh PACKAGE COMMAND...
# Makes sure every COMMAND is on PATH, installing Debian's PACKAGE when one is missing: the
# integration tests compare tend with real peers (promtool and Prometheus, Alertmanager,
# systemd-analyze). Idempotent: does nothing when they are all there. Installing needs root (CI
# runs as root) or password-less sudo; otherwise it says what to install and exits non-zero.
# apt's output goes to stderr.
set -eu
package=${1:?usage: debian-package.sh PACKAGE COMMAND...}
shift

missing=
for command in "$@"; do
    command -v "$command" >/dev/null 2>&1 || missing="$missing $command"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
else
    echo "debian-package.sh:$missing missing; install Debian's '$package' package as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: update only when needed.
if ! apt-cache show "$package" >/dev/null 2>&1; then
    $SUDO apt-get update -q >&2
fi
# --no-install-recommends: the commands are all the tests need. A package's postinst may try to
# start its service; without systemd running (containers) that is a no-op, and the tests run
# their own instance on a port and folder of their own either way.
$SUDO apt-get install -y -q --no-install-recommends "$package" >&2

for command in "$@"; do
    if ! command -v "$command" >/dev/null 2>&1; then
        echo "debian-package.sh: installed '$package' but '$command' is still not on PATH" >&2
        exit 1
    fi
done
