#!/usr/bin/env bash
# Installs on a fresh machine everything the test command needs. Idempotent.
set -euo pipefail
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
