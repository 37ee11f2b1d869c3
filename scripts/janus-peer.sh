#!/usr/bin/env bash
# Sets up Janus VideoRoom as the peer that `sluice bench` compares against (issue 8).
#
#   scripts/janus-peer.sh up       install janus if missing, create the network namespace,
#                                  write a minimal config, start janus, wait for its HTTP API
#   scripts/janus-peer.sh down     stop janus and remove the namespace
#   scripts/janus-peer.sh status   say whether it runs (exit 0 if it answers, 3 if not)
#   scripts/janus-peer.sh pid      print janus's pid (for /proc/<pid>/stat CPU sampling)
#
# Janus refuses to gather candidates on 127.0.0.1, so it runs in its own network namespace
# joined to the host by a veth pair: host side $HOST_IP, namespace side $NS_IP. The API is
# then http://$NS_IP:$PORT/janus and ICE happens over the veth (host candidates only).
# Idempotent: `up` twice leaves one janus running; `down` twice is fine. Needs root.
#
# Environment (all optional):
#   SLUICE_JANUS_DIR     private directory for config, log, pid   (default /tmp/sluice-janus)
#   SLUICE_JANUS_NS      network namespace name                   (default sluice-janus)
#   SLUICE_JANUS_HOST_IP host side of the veth                    (default 10.77.0.1)
#   SLUICE_JANUS_NS_IP   namespace side, where janus listens       (default 10.77.0.2)
#   SLUICE_JANUS_PORT    HTTP API port                            (default 8088)
#   SLUICE_JANUS_DEBUG   janus debug_level 0-7                    (default 3: errors+warnings)
#   SLUICE_JANUS_RTP     RTP/RTCP UDP port range                  (default 20000-40000)
#   SLUICE_JANUS_CPUS    if set, pin janus with taskset -c (e.g. "1" for one core)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
templates="$here/janus"

DIR=${SLUICE_JANUS_DIR:-/tmp/sluice-janus}
NS=${SLUICE_JANUS_NS:-sluice-janus}
HOST_IP=${SLUICE_JANUS_HOST_IP:-10.77.0.1}
NS_IP=${SLUICE_JANUS_NS_IP:-10.77.0.2}
PORT=${SLUICE_JANUS_PORT:-8088}
DEBUG=${SLUICE_JANUS_DEBUG:-3}
RTP=${SLUICE_JANUS_RTP:-20000-40000}
CPUS=${SLUICE_JANUS_CPUS:-}
# veth names are limited to 15 characters; derive them from the namespace name.
VETH_HOST="vh-${NS:0:12}"
VETH_NS="vn-${NS:0:12}"

PIDFILE="$DIR/janus.pid"
LOGFILE="$DIR/janus.log"
URL="http://$NS_IP:$PORT/janus"

die() { echo "janus-peer: error: $*" >&2; exit 1; }
say() { echo "janus-peer: $*"; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces and apt-get need it); try: sudo $0 $*"
}

# pid of the running janus, or nothing. The pid file alone is not trusted: the process
# must exist and be janus.
running_pid() {
    [[ -s $PIDFILE ]] || return 0
    local pid
    pid=$(tr -dc '0-9' <"$PIDFILE")
    [[ -n $pid && -d /proc/$pid ]] || return 0
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == janus ]] || return 0
    echo "$pid"
}

api_answers() {
    curl -fsS --max-time 2 "$URL/info" >/dev/null 2>&1
}

install_deps() {
    local pkgs=(janus iproute2 curl ca-certificates procps)
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand (this script targets Debian)"
        say "installing ${missing[*]}"
        apt-get update -q || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
            || die "apt-get install ${missing[*]} failed"
    fi
    command -v janus >/dev/null || die "janus binary not found after installing the package"
    # Debian's package enables janus.service (all plugins and transports, on every
    # interface). It would be a second janus eating CPU next to the one we measure.
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        if systemctl is-active --quiet janus 2>/dev/null || systemctl is-enabled --quiet janus 2>/dev/null; then
            say "stopping and disabling the packaged janus.service"
            systemctl disable --now janus >/dev/null 2>&1 || true
        fi
    fi
}

plugin_lib_dir() {
    # Debian: /usr/lib/<triplet>/janus; source builds: /opt/janus/lib/janus or /usr/local/lib/janus.
    local d
    for d in /usr/lib/*/janus /usr/lib/janus /usr/local/lib/janus /opt/janus/lib/janus; do
        [[ -f $d/plugins/libjanus_videoroom.so && -f $d/transports/libjanus_http.so ]] && { echo "$d"; return; }
    done
    die "cannot find libjanus_videoroom.so and libjanus_http.so (is the janus package complete?)"
}

setup_netns() {
    if ! ip netns list | awk '{print $1}' | grep -qx "$NS"; then
        say "creating network namespace $NS"
        ip netns add "$NS"
    fi
    if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
        # A half-made pair (namespace side left in the namespace) would block the add.
        ip netns exec "$NS" ip link del "$VETH_NS" >/dev/null 2>&1 || true
        ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
        ip link set "$VETH_NS" netns "$NS"
    fi
    ip addr replace "$HOST_IP/24" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    ip netns exec "$NS" ip link set lo up
    ip netns exec "$NS" ip addr replace "$NS_IP/24" dev "$VETH_NS"
    ip netns exec "$NS" ip link set "$VETH_NS" up
    # Default route back through the host, so a client candidate on another host address
    # is still reachable. No IPv6 at all in the namespace.
    ip netns exec "$NS" ip route replace default via "$HOST_IP" dev "$VETH_NS"
    ip netns exec "$NS" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
    ip netns exec "$NS" sysctl -q -w net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
    # Larger socket buffers help Janus under bench load (host-wide knobs, not per namespace
    # on older kernels; only raised, never lowered).
    local k want cur
    for k in net.core.rmem_max net.core.wmem_max; do
        want=8388608
        cur=$(sysctl -n "$k" 2>/dev/null || echo 0)
        ((cur >= want)) || sysctl -q -w "$k=$want" >/dev/null 2>&1 || true
    done
    if command -v ping >/dev/null; then
        ip netns exec "$NS" ping -c1 -W2 "$HOST_IP" >/dev/null 2>&1 \
            || die "veth $VETH_HOST <-> $NS:$VETH_NS does not pass traffic ($HOST_IP <-> $NS_IP)"
    fi
}

write_config() {
    local lib conf
    lib=$(plugin_lib_dir)
    conf="$DIR/conf"
    mkdir -p "$conf" "$DIR/plugins" "$DIR/transports" "$DIR/events" "$DIR/loggers"
    # Only the VideoRoom plugin and the HTTP transport: Janus loads every .so it finds.
    rm -f "$DIR"/plugins/* "$DIR"/transports/* "$DIR"/events/* "$DIR"/loggers/*
    ln -s "$lib/plugins/libjanus_videoroom.so" "$DIR/plugins/libjanus_videoroom.so"
    ln -s "$lib/transports/libjanus_http.so" "$DIR/transports/libjanus_http.so"
    local f
    for f in janus.jcfg janus.transport.http.jcfg janus.plugin.videoroom.jcfg; do
        [[ -f $templates/$f.in ]] || die "missing template $templates/$f.in"
        sed -e "s|@CONF_DIR@|$conf|g" \
            -e "s|@PLUGINS_DIR@|$DIR/plugins|g" \
            -e "s|@TRANSPORTS_DIR@|$DIR/transports|g" \
            -e "s|@EVENTS_DIR@|$DIR/events|g" \
            -e "s|@LOGGERS_DIR@|$DIR/loggers|g" \
            -e "s|@DEBUG_LEVEL@|$DEBUG|g" \
            -e "s|@RTP_PORT_RANGE@|$RTP|g" \
            -e "s|@ICE_ENFORCE@|$NS_IP|g" \
            -e "s|@HTTP_IP@|$NS_IP|g" \
            -e "s|@HTTP_PORT@|$PORT|g" \
            "$templates/$f.in" >"$conf/$f"
    done
}

start_janus() {
    rm -f "$PIDFILE"
    : >"$LOGFILE"
    local pin=()
    [[ -n $CPUS ]] && pin=(taskset -c "$CPUS")
    say "starting janus in $NS (log $LOGFILE)"
    # ip netns exec execs janus in place, so $! is janus's pid; janus also writes -p.
    (
        ulimit -n 65536 2>/dev/null || true
        exec setsid ip netns exec "$NS" "${pin[@]}" janus \
            -C "$DIR/conf/janus.jcfg" -F "$DIR/conf" -P "$DIR/plugins" \
            -p "$PIDFILE" -N -L "$LOGFILE" -o -D -d "$DEBUG" \
            </dev/null >>"$DIR/janus.stdout" 2>&1
    ) &
    local i
    for ((i = 0; i < 150; i++)); do
        if api_answers; then
            say "janus $(running_pid) answers at $URL (pid file $PIDFILE)"
            return 0
        fi
        if [[ -z $(running_pid) ]] && ((i > 10)) && ! kill -0 $! 2>/dev/null; then
            tail -n 30 "$LOGFILE" "$DIR/janus.stdout" >&2 || true
            die "janus exited during start-up (see $LOGFILE)"
        fi
        sleep 0.2
    done
    tail -n 30 "$LOGFILE" >&2 || true
    die "janus did not answer $URL/info within 30 s (see $LOGFILE)"
}

cmd_up() {
    need_root up
    install_deps
    setup_netns
    if [[ -n $(running_pid) ]]; then
        if api_answers; then
            say "already running: janus $(running_pid) at $URL"
            return 0
        fi
        say "janus $(running_pid) runs but does not answer; restarting it"
        stop_janus
    fi
    write_config
    start_janus
}

stop_janus() {
    local pid i
    pid=$(running_pid)
    [[ -n $pid ]] || return 0
    say "stopping janus $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}

cmd_down() {
    need_root down
    stop_janus
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; then
        # Anything else still inside would keep the namespace alive; janus was ours.
        say "removing network namespace $NS"
        ip netns del "$NS"
    fi
    ip link del "$VETH_HOST" >/dev/null 2>&1 || true
    say "down"
}

cmd_status() {
    local pid
    pid=$(running_pid)
    if [[ -n $pid ]] && api_answers; then
        local ver
        ver=$(curl -fsS --max-time 2 "$URL/info" | grep -oE '"version_string": *"[^"]*"' | head -n1 | cut -d'"' -f4)
        say "running: janus ${ver:-?} pid $pid, API $URL, namespace $NS, log $LOGFILE"
        return 0
    elif [[ -n $pid ]]; then
        say "janus pid $pid exists but $URL/info does not answer"
        return 3
    fi
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; then
        say "not running (namespace $NS exists)"
    else
        say "not running"
    fi
    return 3
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    pid)
        pid=$(running_pid)
        [[ -n $pid ]] || { echo "janus-peer: not running" >&2; exit 3; }
        echo "$pid"
        ;;
    *)
        echo "usage: $0 up|down|status|pid" >&2
        exit 2
        ;;
esac
