#!/bin/sh
# Makes sure Prometheus Alertmanager is installed: tests/it/alerts.rs posts tend's alerts to a
# real Alertmanager on a loopback port and reads them back from its v2 API (issue 14). Debian's
# `prometheus-alertmanager` package installs it as /usr/bin/prometheus-alertmanager. Idempotent:
# does nothing when it is already there. Installing needs root (CI runs as root) or sudo; prints
# what to do otherwise and exits non-zero.
set -eu

if command -v prometheus-alertmanager >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
else
    echo "alertmanager.sh: prometheus-alertmanager is missing; install Debian's 'prometheus-alertmanager' package as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: update only when needed.
if ! apt-cache show prometheus-alertmanager >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
# The package's postinst may try to start its service; without systemd running (containers)
# that is a no-op, and the test runs its own Alertmanager on a port and folder of its own.
$SUDO apt-get install -y -q --no-install-recommends prometheus-alertmanager >&2

if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
    echo "alertmanager.sh: installed 'prometheus-alertmanager' but it is still not on PATH" >&2
    exit 1
fi
