#!/usr/bin/env bash
# The whole test suite: install the peers the tests need, check formatting and lints, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets are a workspace of their own (cargo-fuzz builds them): check that they still compile against
# the parsers they drive.
cargo check --locked --manifest-path fuzz/Cargo.toml --bins
# The architecture's rules: no crate depends on one later in the flow, libraries never print. Each check first
# proves on its fixtures that it fails on a violation.
scripts/check-layering.py --self-test
scripts/check-layering.py
scripts/check-no-print.py --self-test
scripts/check-no-print.py
cargo test --workspace --locked --no-fail-fast "$@"
