#!/usr/bin/env bash
# The test command (see README.md). Works on a fresh clone: installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
scripts/fuzz.sh smoke "${FUZZ_SMOKE_RUNS:-20000}"
echo "all tests passed"
