#!/bin/sh
# Prints the path of systemd-analyze, installing Debian's `systemd` package (which carries it)
# when it is missing. Idempotent: with the tool present it only prints the path. Installing
# needs root and Debian's package registry, as in CI; apt's output goes to stderr so that
# stdout is only the path. tests/it/export.rs calls this before `systemd-analyze verify`.
set -eu
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "systemd-analyze is missing and installing it needs root: apt-get install systemd" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends systemd >&2
fi
command -v systemd-analyze
