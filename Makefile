# tend: the two commands a fresh machine needs are `make run` and `make test`.
.PHONY: run test test-rust test-e2e build release static lint fmt clean

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

build:
	$(CARGO) build

release:
	$(CARGO) build --release

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
