#!/usr/bin/env bash
# Installs on a fresh machine everything the test command needs. Idempotent.
set -euo pipefail
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Browser acceptance tests (tests/tests/browser.rs): Debian's Chromium, driven by
# playwright-core (Node.js >= 20) from tests/browser, pinned by its package-lock.json.
as_root=()
if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
apt_install() {
    "${as_root[@]}" apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}
if [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium"
    apt_install chromium chromium-driver
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs"
    apt_install nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    echo "the browser tests need Node.js >= 20 (playwright-core); found $(node --version)" >&2
    exit 1
fi
browser_dir="$(cd "$(dirname "$0")/../tests/browser" && pwd)"
if [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
    echo "installing the browser tests' node modules"
    (cd "$browser_dir" && npm ci --no-audit --no-fund)
fi

# Janus VideoRoom, the comparison peer of `sluice bench` (scripts/janus-peer.sh,
# tests/tests/janus.rs).
if ! command -v janus >/dev/null 2>&1; then
    echo "installing janus"
    apt_install --no-install-recommends janus
fi

# Interop tests (tests/tests/interop.rs): GStreamer webrtcbin and aiortc.
"$(dirname "$0")/install-interop-deps.sh"
