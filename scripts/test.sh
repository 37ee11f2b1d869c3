#!/usr/bin/env bash
# The test command (see README.md). Works on a fresh clone: installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh clone gains nothing from incremental caches, which would double the target dir.
export CARGO_INCREMENTAL=0
df -h . | sed 's/^/disk: /'
scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast
scripts/fuzz.sh smoke "${FUZZ_SMOKE_RUNS:-20000}"
echo "all tests passed"
