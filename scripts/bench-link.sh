#!/usr/bin/env bash
# Cascade link benchmark (issue 6): two cluster link endpoints through the impairment
# relay (10 Mbit/s, 40 ms RTT, 1% random loss each way by default) — bulk datagram
# throughput per congestion controller, offered media above the rate through the link
# shaper, CPU per relayed packet beside raw UDP. Not part of the test command.
#   scripts/bench-link.sh                 full run (~4 min), table + target/link-bench.json
#   QUICK=1 scripts/bench-link.sh         shorter windows, noisier
#   scripts/bench-link.sh --timeline ...  further options go to link-bench (--help)
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--json target/link-bench.json)
if [ "${QUICK:-0}" = 1 ]; then args+=(--quick); fi
cargo build --release -p sluice-bench --bin link-bench
exec target/release/link-bench "${args[@]}" "$@"
