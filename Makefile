# tend: the two commands a fresh machine needs are `make run` and `make test`.
.PHONY: run test test-rust test-e2e screenshot build release static static-check bench bench-quick soak lint fmt clean

CARGO ?= cargo

# Runs tend on its built-in demo (examples/demo.json): dashboard at http://127.0.0.1:7070/
run: release
	./target/release/tend up --config examples/demo.json

# Every test: unit, integration (real processes and sockets), and browser (real chromium).
test: lint test-rust test-e2e

# Installs honcho from PyPI into target/honcho-venv when it is missing (tests/it/procfile.rs
# compares tend's reading of a Procfile and .env with honcho's).
test-rust:
	sh tests/install-honcho.sh
	$(CARGO) test --all-targets

# Installs Debian's chromium and the npm packages when they are missing (see tests/e2e/run.sh).
test-e2e: build
	TEND_BIN=$(CURDIR)/target/debug/tend sh tests/e2e/run.sh

# The README's picture of the dashboard, taken by a browser test (into target/e2e/).
screenshot: test-e2e
	cp target/e2e/dashboard.png docs/dashboard.png

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) fmt --manifest-path bench/Cargo.toml -- --check
	$(CARGO) clippy --manifest-path bench/Cargo.toml -- -D warnings

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# A fully static, stripped release binary for minimal hosts: target/static/tend. glibc's static
# libc on the gnu target (there is no musl target here); relocation-model=static links a plain
# static executable instead of static-pie, which drops ~70 KB of dynamic relocations.
STATIC_TARGET = x86_64-unknown-linux-gnu
STATIC_RUSTFLAGS = -C target-feature=+crt-static -C relocation-model=static
static:
	RUSTFLAGS='$(STATIC_RUSTFLAGS)' $(CARGO) build --release --target $(STATIC_TARGET)
	mkdir -p target/static
	cp target/$(STATIC_TARGET)/release/tend target/static/tend
	@$(MAKE) --no-print-directory static-check

static-check:
	@file target/static/tend
	@ldd target/static/tend 2>&1 | grep -Eq 'not a dynamic executable|statically linked' \
		|| { echo "static: target/static/tend is not static"; exit 1; }
	@size=$$(stat -c %s target/static/tend); \
		echo "static: target/static/tend is $$size bytes (limit 2 MiB = 2097152)"; \
		[ $$size -lt 2097152 ] || echo "static: WARNING: over 2 MiB (DESIGN §11)"

# tend beside supervisord (installed by pip into target/bench-venv): prints one table and
# writes bench/results/<date>.md. `make bench ARGS=--quick` (or `make bench-quick`): < 4 min.
bench: static
	sh bench/run.sh $(ARGS)

bench-quick: static
	sh bench/run.sh --quick $(ARGS)

# Minutes of random start/stop/restart/kill -9 over 100 servers; a verdict at the end. Not in CI.
# `make soak SOAK_SECONDS=600`.
SOAK_SECONDS ?= 300
soak: static
	sh bench/run.sh soak --seconds $(SOAK_SECONDS)

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
