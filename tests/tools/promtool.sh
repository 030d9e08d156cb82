#!/bin/sh
# Makes sure `promtool` (Prometheus's own checker) and `prometheus` itself are on PATH: the
# /metrics test validates tend's output with `promtool check metrics` (issue 6, item 2), and the
# fleet test (issue 17) runs `promtool check/test rules` and a real Prometheus scraping two tends.
# Debian's `prometheus` package carries both. Idempotent: does nothing when both are already
# there. Installing needs root (CI runs as root) or sudo; prints what to do otherwise and exits
# non-zero.
set -eu

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
else
    echo "promtool.sh: promtool or prometheus is missing; install Debian's 'prometheus' package as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: update only when needed.
if ! apt-cache show prometheus >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
# --no-install-recommends: the two binaries are all the tests need. The package's postinst may
# try to start the prometheus service; without systemd running (containers) that is a no-op, and
# the tests run their own Prometheus on a port of their own either way.
$SUDO apt-get install -y -q --no-install-recommends prometheus >&2

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    echo "promtool.sh: installed 'prometheus' but promtool or prometheus is still not on PATH" >&2
    exit 1
fi
