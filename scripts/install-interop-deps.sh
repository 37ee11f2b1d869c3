#!/usr/bin/env bash
# Installs what the interop tests (tests/tests/interop.rs) need on a fresh Debian machine:
# GStreamer webrtcbin with its Python bindings (system python3), iproute2 for the network
# namespace, Chromium, and a venv with aiortc at target/interop-venv. Idempotent: a second
# run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
    gstreamer1.0-tools
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
    gstreamer1.0-nice
    libnice10
    gir1.2-gstreamer-1.0
    gir1.2-gst-plugins-base-1.0
    gir1.2-gst-plugins-bad-1.0
    python3
    python3-gi
    python3-venv
    iproute2
    openssl
    chromium
)

missing=()
for pkg in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The venv is built from the system python3 (the one apt's python3-venv serves), so it
# does not depend on a pyenv or other interpreter being present.
venv=target/interop-venv
stamp="$venv/.requirements"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv"
    mkdir -p target
    /usr/bin/python3 -m venv "$venv"
fi
if ! cmp -s tests/interop/requirements.txt "$stamp"; then
    echo "installing tests/interop/requirements.txt into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -r tests/interop/requirements.txt
    cp tests/interop/requirements.txt "$stamp"
fi
