#!/usr/bin/env bash
# Issue 14's attacks against one or two lanchat-server builds, with honest users watching:
# lanchat-abuse's rows (what each attacker achieved, honest latency and harm, server memory).
#
#   bench/abuse.sh                          # this tree's release build
#   bench/abuse.sh OLD_BIN                  # OLD_BIN, then this tree's build (before / after)
#
# Each server: loopback only, no announcements beyond a loopback discovery port, a password
# (so that guessing can be measured) and --max-clients 500 (so that 20 addresses x 64 idle
# sockets would take every slot without the waiting cap). SECS (default 3) per attack.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release --quiet -p lanchat-server -p lanchat-tests --bin lanchat-server --bin lanchat-abuse
ABUSE=$ROOT/target/release/lanchat-abuse
SECS=${SECS:-3}
ulimit -n 8192 2>/dev/null || true
# The servers' TLS certificates go to a scratch directory, not the runner's home.
STATE=$(mktemp -d /tmp/lanchat-abuse.XXXXXX)
trap 'rm -rf "$STATE"' EXIT
export XDG_STATE_HOME=$STATE

run_one() { # LABEL BIN
    local label=$1 bin=$2 udp out pid addr
    udp=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    out=$(mktemp)
    "$bin" --listen 127.0.0.1:0 --announce-port "$udp" --announce-interval 3600 \
        --password hunter2 --max-clients 500 >"$out" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do
        addr=$(awk '/^listening/{print $2; exit}' "$out")
        [ -n "$addr" ] && break
        sleep 0.05
    done
    echo "== $label: $bin"
    "$ABUSE" --addr "$addr" --udp-port "$udp" --server-pid "$pid" --password hunter2 \
        --secs "$SECS" "${ABUSE_ARGS[@]}" || echo "(lanchat-abuse failed: $?)"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$out"
}

ABUSE_ARGS=()
[ -n "${JSON:-}" ] && ABUSE_ARGS+=(--json)
if [ $# -ge 1 ]; then
    run_one before "$1"
fi
run_one after "$ROOT/target/release/lanchat-server"
