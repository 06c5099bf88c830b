# The two front-door commands: `make dev` runs a single-node Fulcrum, `make test` runs the tests.
# Both install what a fresh Debian machine lacks (see scripts/deps.sh).

.PHONY: deps dev build test lint bench-control bench-dataplane

deps:
	@./scripts/deps.sh

build: deps
	cargo build --workspace --all-targets

dev: deps
	cargo run -p fulcrum-node --bin fulcrum -- dev

test: deps
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
