#!/bin/sh
# make bench / make soak: installs supervisord into a local venv (never globally), builds the
# bench program, and runs it against the static tend binary (make static builds it first).
set -eu
cd "$(dirname "$0")/.."
VENV=target/bench-venv
if [ "${1:-}" != "soak" ] && [ ! -x "$VENV/bin/supervisord" ]; then
    echo "bench: installing supervisor into $VENV (pip, local venv)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet supervisor
fi
cargo build --release --quiet --manifest-path bench/Cargo.toml
TEND_BIN="${TEND_BIN:-$PWD/target/static/tend}" SUPERVISORD="$PWD/$VENV/bin/supervisord" \
    exec bench/target/release/tend-bench "$@"
