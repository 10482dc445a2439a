#!/usr/bin/env bash
# The whole test suite: install the peers the tests need, check formatting and lints, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast "$@"
