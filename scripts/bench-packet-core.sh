#!/usr/bin/env bash
# Packet-core micro-benchmarks (criterion) and the README table with target ratios.
#   scripts/bench-packet-core.sh            full run (~4 min)
#   QUICK=1 scripts/bench-packet-core.sh    shorter measurement, noisier
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
if [ "${QUICK:-0}" = 1 ]; then args=(--warm-up-time 1 --measurement-time 2); fi
cargo bench -p sluice-bench --bench srtp --bench packet -- "${args[@]}"
python3 benches/criterion_table.py target/criterion
