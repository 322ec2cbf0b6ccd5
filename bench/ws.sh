#!/usr/bin/env bash
# WebSocket members against TCP members (issue 18): the same fan-out with every client speaking
# JSON lines over plain TCP, then over WebSocket (`lanchat-load --ws`), alternating run by run,
# each against a fresh server, pinned as run.sh pins (server on CPU 1, generator on CPU 0).
# Prints a Markdown table of medians (ranges in brackets) of deliveries per server CPU-second, and
# (with valgrind installed) the user-space instructions the server executes per delivery, counted
# by callgrind over a shorter run of each: a figure the machine's other load does not move.
#
#   bench/ws.sh              # 1 room x 1,000 members x 5 senders x 2,000 messages, 3 rounds
#   ROUNDS=5 bench/ws.sh
#
# Release builds, from $CARGO_TARGET_DIR when set. Everything listens on 127.0.0.1 only; every
# run is bounded by a message count and a timeout; every process started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d /tmp/lanchat-ws.XXXXXX)
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log "building release binaries"
cargo build --release --quiet -p lanchat-server >&2
cargo build --release --quiet -p lanchat-tests --bin lanchat-load >&2
SERVER=$TARGET/release/lanchat-server
LOAD=$TARGET/release/lanchat-load
ulimit -n "$(ulimit -Hn)"

FAN=(fanout --rooms 1 --members 1000 --senders 5 --messages 2000)

# LABEL -- GENERATOR FLAGS: one run against a fresh server; appends the JSON report.
N=0
measure() {
    local label=$1
    shift 2
    : >"$WORK/out"
    "${SERVER_ON[@]}" "$SERVER" --listen 127.0.0.1:0 --no-announce --rate-per-sec 0 \
        --max-per-ip 100000 --max-clients 100000 >"$WORK/out" 2>/dev/null &
    local pid=$! addr="" i out
    PIDS+=("$pid")
    for i in $(seq 1 100); do
        addr=$(sed -n 's/^listening \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$WORK/out" | head -1)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "lanchat-server did not start" >&2; exit 1; }
    N=$((N + 1))
    out=$("${GEN_ON[@]}" timeout 180 "$LOAD" --json --timeout 120 --addr "$addr" --server-pid "$pid" \
        --prefix "g$N" "$@" "${FAN[@]}" || echo '{"completed":false}')
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '{"label":"%s","report":%s}\n' "$label" "$out" >>"$WORK/results.jsonl"
    log "$label: $(python3 "$ROOT/bench/report.py" --summary <<<"$out")"
}

# LABEL -- GENERATOR FLAGS: a fan-out against the server under callgrind; appends the instruction
# count. A room of 100 (10 senders x 1,000 messages): its setup is a small share of the count,
# where the room of 1,000's 1,000 joins (each answered with the member list) would dominate it.
count() {
    local label=$1
    shift 2
    : >"$WORK/out"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" "$SERVER" --listen 127.0.0.1:0 \
        --no-announce --rate-per-sec 0 --max-per-ip 100000 >"$WORK/out" 2>/dev/null &
    local pid=$! addr="" i out ir
    PIDS+=("$pid")
    for i in $(seq 1 300); do
        addr=$(sed -n 's/^listening \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$WORK/out" | head -1)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "lanchat-server did not start under callgrind" >&2; exit 1; }
    out=$(timeout 300 "$LOAD" --json --timeout 250 --addr "$addr" --prefix "c$label" "$@" \
        fanout --rooms 1 --members 100 --senders 10 --messages 1000 || echo '{"completed":false}')
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ir=$(grep -h '^totals:' "$WORK"/cg.* | awk '{print $2}')
    rm -f "$WORK"/cg.*
    printf '{"label":"%s","instructions":%s,"report":%s}\n' "$label" "${ir:-0}" "$out" >>"$WORK/counts.jsonl"
    log "$label under callgrind: ${ir:-?} instructions"
}

: >"$WORK/results.jsonl"
: >"$WORK/counts.jsonl"
if command -v valgrind >/dev/null; then
    count tcp --
    count websocket -- --ws
else
    log "valgrind not installed: no instruction counts"
fi
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        measure tcp --
        measure websocket -- --ws
    else
        measure websocket -- --ws
        measure tcp --
    fi
done

python3 - "$WORK/results.jsonl" "$ROUNDS" "$WORK/counts.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
counts = {c["label"]: c for c in map(json.loads, open(sys.argv[3]))}
def rates(label):
    return [r["report"]["deliveries_per_server_cpu_s"] / 1e6 for r in rows
            if r["label"] == label and r["report"].get("completed")]
def cell(v):
    return f"**{statistics.median(v):.2f}** ({min(v):.2f}-{max(v):.2f})" if v else "n/a"
tcp, ws = rates("tcp"), rates("websocket")
ratio = f"{statistics.median(ws) / statistics.median(tcp):.2f}" if tcp and ws else "n/a"
print(f"Medians of {sys.argv[2]} alternating rounds (range in brackets).\n")
print("| shape | TCP members: deliveries per server CPU-s (M) | WebSocket members | WebSocket / TCP |")
print("| --- | ---: | ---: | ---: |")
print(f"| 1 room x 1,000 members x 5 senders | {cell(tcp)} | {cell(ws)} | {ratio} |")
bad = sum(r["report"].get(k, 0) or 0 for r in rows for k in ("lost", "duplicated", "reordered"))
incomplete = sum(1 for r in rows if not r["report"].get("completed"))
print(f"\nLost + duplicated + reordered over all {len(rows)} runs: {bad}; incomplete runs: {incomplete}.")
def per_delivery(label):
    c = counts.get(label)
    if not c or not c["report"].get("completed") or not c["instructions"]:
        return None
    return c["instructions"] / c["report"]["deliveries"]
tcp_i, ws_i = per_delivery("tcp"), per_delivery("websocket")
if tcp_i and ws_i:
    print("\nUser-space instructions the server executed per delivery (callgrind, 1 room x 100 members x"
          " 10 senders x 1,000 messages, setup included):\n")
    print("| shape | TCP members | WebSocket members | WebSocket / TCP |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| 1 room x 100 members x 10 senders | {tcp_i:,.0f} | {ws_i:,.0f} | {ws_i / tcp_i:.2f} |")
EOF
