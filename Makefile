# tend: the two commands a fresh machine needs are `make run` and `make test`.
.PHONY: run test test-rust test-e2e screenshot build release static static-check bench bench-quick bench-binaries soak lint fmt clean

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
# Runs against the static release build (`make static`), the binary a minimal host gets: its
# panic = "abort", its linking and its gzip-embedded files are tried in a real browser.
test-e2e: static
	TEND_BIN=$(CURDIR)/target/static/tend sh tests/e2e/run.sh

# The README's picture of the dashboard, taken by a browser test (into target/e2e/).
screenshot: test-e2e
	cp target/e2e/dashboard.png docs/dashboard.png

# The layout check (tests/tools/layout.sh): no production file over 800 lines without a reason
# in its header, one module style (docs/ARCHITECTURE.md).
lint:
	sh tests/tools/layout.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) fmt --manifest-path bench/Cargo.toml -- --check
	$(CARGO) clippy --manifest-path bench/Cargo.toml -- -D warnings

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# A fully static, stripped release binary for minimal hosts: target/static/tend. The musl target
# when it is installed or rustup can add it (smaller: musl's libc is about a third of glibc's
# static archive), else glibc's static libc on the gnu target, said so. `make static
# STATIC_LIBC=gnu` builds the glibc one on purpose. relocation-model=static links a plain
# static executable instead of static-pie, which drops ~50-70 KB of dynamic relocations.
# The musl build links with the rust-lld every rustup toolchain ships (else the system's
# linker): identical code folding (--icf=safe merges only functions whose address is never
# taken, 11 KB) and link/no-unwind-tables.ld, which drops the 187 KB of unwind tables a
# panic = "abort" build never reads (the file says why). The glibc build keeps its tables
# (glibc's own thread cancellation unwinds) and uses gold's --icf=safe where gold is installed.
MUSL_TARGET = x86_64-unknown-linux-musl
GNU_TARGET = x86_64-unknown-linux-gnu
STATIC_LIBC ?= musl
static:
	@target=$(GNU_TARGET); flags='-C target-feature=+crt-static -C relocation-model=static'; \
	if command -v ld.gold >/dev/null 2>&1; then \
		flags="$$flags -C link-arg=-fuse-ld=gold -C link-arg=-Wl,--icf=safe"; \
	fi; \
	if [ "$(STATIC_LIBC)" = musl ]; then \
		if rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET) \
			|| timeout 120 rustup target add $(MUSL_TARGET) >/dev/null 2>&1; then \
			target=$(MUSL_TARGET); flags='-C relocation-model=static'; \
			gcc_ld="$$(rustc --print sysroot)/lib/rustlib/$$(rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld"; \
			if [ -x "$$gcc_ld/ld.lld" ]; then \
				flags="$$flags -C link-arg=-B$$gcc_ld -C link-arg=-fuse-ld=lld -C link-arg=-Wl,--icf=safe"; \
			fi; \
			flags="$$flags -C link-arg=-Wl,-T,$(CURDIR)/link/no-unwind-tables.ld"; \
		else \
			echo "static: the musl target ($(MUSL_TARGET)) cannot be had here; building with glibc's static libc instead"; \
		fi; \
	fi; \
	echo "static: $$target ($$flags)"; \
	RUSTFLAGS="$$flags" $(CARGO) build --release --target $$target && \
	mkdir -p target/static && cp target/$$target/release/tend target/static/tend && \
	echo $$target > target/static/built-for
	@$(MAKE) --no-print-directory static-check

static-check:
	@file target/static/tend
	@ldd target/static/tend 2>&1 | grep -Eq 'not a dynamic executable|statically linked' \
		|| { echo "static: target/static/tend is not static"; exit 1; }
	@size=$$(stat -c %s target/static/tend); \
		echo "static: target/static/tend is $$size bytes"; \
		if grep -q musl target/static/built-for; then \
			[ $$size -lt 1677721 ] && echo "static: under the musl build's 1.6 MiB target (1677721 bytes)" \
				|| echo "static: WARNING: over the musl build's 1.6 MiB target (1677721 bytes)"; \
		fi

# tend beside supervisord (installed by pip into target/bench-venv): prints one table and
# writes bench/results/<date>.md. `make bench ARGS=--quick` (or `make bench-quick`): about 8 min (6.5 of measuring, the rest the two static builds).
# The bench measures the glibc static build: its figures stay comparable across runs, and
# musl's allocator trades throughput for memory (README "Minimal hosts"). The musl build is
# made first and kept as target/static/tend-musl, for its size (the one `make static` ships).
# The full run adds the large tier (10,000 servers; it says what the host must allow).
bench: bench-binaries
	sh bench/run.sh $(ARGS)

bench-quick: bench-binaries
	sh bench/run.sh --quick $(ARGS)

bench-binaries:
	@$(MAKE) --no-print-directory static
	@if grep -q musl target/static/built-for; then cp target/static/tend target/static/tend-musl; \
		else rm -f target/static/tend-musl; fi
	@$(MAKE) --no-print-directory static STATIC_LIBC=gnu

# Minutes of random start/stop/restart/kill -9 over 100 servers; a verdict at the end. Not in CI.
# `make soak SOAK_SECONDS=600`.
SOAK_SECONDS ?= 300
soak:
	@$(MAKE) --no-print-directory static STATIC_LIBC=gnu
	sh bench/run.sh soak --seconds $(SOAK_SECONDS)

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
