#!/usr/bin/env bash
# The WebRTC comparison (issue 8): real WHIP/WHEP sessions against Sluice, the
# null-forwarder reference and Janus VideoRoom, in one run, one table. Installs Janus if
# missing, sets it up in its network namespace (scripts/janus-peer.sh; needs root),
# builds the release binaries, and runs `sluice bench webrtc`. Not part of the test
# command.
#   scripts/bench-webrtc.sh                 1 publisher x 16 subscribers, 3 runs each (~8 min)
#   QUICK=1 scripts/bench-webrtc.sh         short windows, one run each, noisier
#   scripts/bench-webrtc.sh --ramp ...      further options go to webrtc-bench (--help)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v janus >/dev/null 2>&1; then
    echo "installing janus" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends janus >&2
fi
cargo build --release -p sluice-control --bin sluice -p sluice-bench --bin webrtc-bench
args=(--targets sluice,null,janus --json target/webrtc-bench.json --plot target/webrtc-bench.svg)
if [ "${QUICK:-0}" = 1 ]; then args+=(--quick --repeats 1); else args+=(--window 20); fi
status=0
target/release/sluice bench webrtc -- "${args[@]}" "$@" || status=$?
scripts/janus-peer.sh down >/dev/null 2>&1 || true
exit $status
