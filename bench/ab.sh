#!/usr/bin/env bash
# Before/after: two lanchat-server builds through the same generator, alternating run by run, so
# that a change is compared with the code before it in one sitting on this shared machine.
#
#   bench/ab.sh REV                 # REV (e.g. a commit before the change) against the work tree
#   ROUNDS=5 bench/ab.sh REV
#   OLD_BIN=path/to/lanchat-server bench/ab.sh REV   # REV already built: use that binary
#   EXTRA=--batched bench/ab.sh REV    # generator flags added to every run (here: batched senders)
#   COUNT=0 bench/ab.sh REV            # no callgrind instruction counts (they take minutes)
#
# Builds REV in a temporary git worktree (release), runs the fan-out rows of bench/run.sh (one of
# them with --data-dir) and the fixed-rate latency row with both servers in turn (pinned as run.sh pins them), and prints a
# Markdown table of medians with their ranges. Everything listens on 127.0.0.1 only; every run is
# bounded by a message count and a timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
REV=${1:?usage: bench/ab.sh REV}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d /tmp/lanchat-ab.XXXXXX)
OLD_TREE=$WORK/old
remove_old_tree() { git -C "$ROOT" worktree remove --force "$OLD_TREE" 2>/dev/null || true; }
CLEANUP_EXTRA=remove_old_tree
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

OLD_BIN=${OLD_BIN:-}
if [ -z "$OLD_BIN" ]; then
    log "building $REV (release)"
    git -C "$ROOT" worktree add --detach "$OLD_TREE" "$REV" >&2
    cargo build --release --quiet --manifest-path "$OLD_TREE/Cargo.toml" -p lanchat-server \
        --target-dir "$WORK/old-target" >&2
    OLD_BIN=$WORK/old-target/release/lanchat-server
fi
log "building the work tree (release)"
cargo build --release --quiet -p lanchat-server >&2
cargo build --release --quiet -p lanchat-tests --bin lanchat-load >&2
declare -A BIN=([before]="$OLD_BIN" [after]="$ROOT/target/release/lanchat-server")
LOAD=$ROOT/target/release/lanchat-load
ulimit -n "$(ulimit -Hn)"

# COMMAND...: start a lanchat-server (the command ends with its binary; the common flags are
# added) and wait for its `listening` line; sets PID and ADDR.
start() {
    : >"$WORK/out"
    "$@" --listen 127.0.0.1:0 --no-announce --rate-per-sec 0 --max-per-ip 100000 \
        >"$WORK/out" 2>/dev/null &
    PID=$!
    PIDS+=("$PID")
    ADDR=""
    local i
    for i in $(seq 1 200); do
        ADDR=$(sed -n 's/^listening \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$WORK/out" | head -1)
        [ -n "$ADDR" ] && return 0
        sleep 0.1
    done
    echo "server did not start: $*" >&2
    exit 1
}

# LABEL SIDE [--data-dir] -- GENERATOR ARGS: one run against a fresh server (with a fresh data
# directory when asked); appends the JSON report.
measure() {
    local label=$1 side=$2
    shift 2
    local flags=()
    if [ "$1" = --data-dir ]; then
        rm -rf "$WORK/data"
        flags=(--data-dir "$WORK/data")
        shift
    fi
    shift # --
    start "${SERVER_ON[@]}" "${BIN[$side]}" --max-clients 100000 "${flags[@]}"
    local pid=$PID addr=$ADDR out
    out=$("${GEN_ON[@]}" timeout 180 "$LOAD" --json --timeout 120 --addr "$addr" --server-pid "$pid" \
        --proto lanchat "$@" ${EXTRA:-} || echo '{"completed":false}')
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '{"label":"%s","side":"%s","report":%s}\n' "$label" "$side" "$out" >>"$WORK/results.jsonl"
    log "$label $side: $(python3 "$ROOT/bench/report.py" --summary <<<"$out")"
}

# LABEL SIDE -- GENERATOR ARGS: the same load against the server under callgrind, which counts the
# instructions the server executes in user space: a figure that does not move with the machine's
# load the way CPU time does (the kernel's share, the TCP stack, is not in it). Setup included.
count() {
    local label=$1 side=$2
    shift 3
    start valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" "${BIN[$side]}"
    local pid=$PID addr=$ADDR out
    out=$(timeout 300 "$LOAD" --json --timeout 250 --addr "$addr" --proto lanchat "$@" \
        || echo '{"completed":false}')
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local ir
    ir=$(grep -h '^totals:' "$WORK"/cg.* | awk '{print $2}')
    rm -f "$WORK"/cg.*
    printf '{"label":"%s","side":"%s","instructions":%s,"report":%s}\n' "$label" "$side" "${ir:-0}" "$out" \
        >>"$WORK/counts.jsonl"
    log "$label $side: ${ir:-?} instructions"
}

FAN_A=(fanout --rooms 1 --members 100 --senders 10 --messages 12000)
FAN_B=(fanout --rooms 1 --members 1000 --senders 5 --messages 2000)
FAN_C=(fanout --rooms 50 --members 20 --senders 1 --messages 6000)
RATE=(fanout --rooms 1 --members 100 --senders 10 --messages 505 --rate 1010 --window 1000)
: >"$WORK/results.jsonl"
: >"$WORK/counts.jsonl"
if [ "${COUNT:-1}" = 0 ]; then
    log "COUNT=0: no instruction counts"
elif command -v valgrind >/dev/null; then
    for s in before after; do
        count fanout-1x100x10 "$s" -- fanout --rooms 1 --members 100 --senders 10 --messages 300
        count fanout-1x1000x5 "$s" -- fanout --rooms 1 --members 1000 --senders 5 --messages 100
        count fanout-50x20x1 "$s" -- fanout --rooms 50 --members 20 --senders 1 --messages 400
    done
else
    log "valgrind not installed: no instruction counts"
fi
for round in $(seq 1 "$ROUNDS"); do
    sides=(before after)
    if [ $((round % 2)) = 0 ]; then sides=(after before); fi
    for s in "${sides[@]}"; do measure fanout-1x100x10 "$s" -- "${FAN_A[@]}"; done
    for s in "${sides[@]}"; do measure fanout-1x1000x5 "$s" -- "${FAN_B[@]}"; done
    for s in "${sides[@]}"; do measure fanout-50x20x1 "$s" -- "${FAN_C[@]}"; done
    for s in "${sides[@]}"; do measure datadir-1x100x10 "$s" --data-dir -- "${FAN_A[@]}"; done
    for s in "${sides[@]}"; do measure rate-100k "$s" -- "${RATE[@]}"; done
done

python3 - "$WORK/results.jsonl" "$REV" "$ROUNDS" "$WORK/counts.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rev, rounds = sys.argv[2], sys.argv[3]
counts = [json.loads(l) for l in open(sys.argv[4])]
def pick(label, side, key):
    out = []
    for r in rows:
        if r["label"] == label and r["side"] == side and r["report"].get("completed"):
            out.append(key(r["report"]))
    return out
def cell(v, fmt):
    if not v:
        return "n/a"
    return f"**{fmt(statistics.median(v))}** ({fmt(min(v))}-{fmt(max(v))})"
m = lambda x: f"{x / 1e6:.2f}"
ms = lambda x: f"{x:.2f}"
print(f"Medians of {rounds} alternating rounds (range in brackets); before = {rev}, after = the work tree.\n")
print("| row | before | after | after / before |")
print("| --- | ---: | ---: | ---: |")
for label in ["fanout-1x100x10", "fanout-1x1000x5", "fanout-50x20x1", "datadir-1x100x10"]:
    b = pick(label, "before", lambda r: r["deliveries_per_server_cpu_s"])
    a = pick(label, "after", lambda r: r["deliveries_per_server_cpu_s"])
    ratio = f"{statistics.median(a) / statistics.median(b):.2f}" if a and b else "n/a"
    print(f"| {label}, deliveries per server CPU-s (M) | {cell(b, m)} | {cell(a, m)} | {ratio} |")
b = pick("rate-100k", "before", lambda r: r["latency_ms"]["p99"])
a = pick("rate-100k", "after", lambda r: r["latency_ms"]["p99"])
ratio = f"{statistics.median(a) / statistics.median(b):.2f}" if a and b else "n/a"
print(f"| rate-100k, p99 latency (ms) | {cell(b, ms)} | {cell(a, ms)} | {ratio} |")
bad = sum((r["report"].get("lost") or 0) + (r["report"].get("duplicated") or 0)
          + (r["report"].get("reordered") or 0) for r in rows)
incomplete = sum(1 for r in rows if not r["report"].get("completed"))
print(f"\nLost + duplicated + reordered over all {len(rows)} runs: {bad}; incomplete runs: {incomplete}.")
if counts:
    print("\nUser-space instructions the server executed per delivery, counted by callgrind over a "
          "shorter run of each shape (setup included, so the room of 1,000 carries its 1,000 "
          "joins):\n")
    print("| shape | before | after | after / before |")
    print("| --- | ---: | ---: | ---: |")
    for label in ["fanout-1x100x10", "fanout-1x1000x5", "fanout-50x20x1"]:
        per = {}
        for c in counts:
            d = c["report"].get("deliveries") or 0
            if c["label"] == label and d and c["report"].get("completed"):
                per[c["side"]] = c["instructions"] / d
        if "before" in per and "after" in per:
            print(f"| {label} | {per['before']:,.0f} | {per['after']:,.0f} "
                  f"| {per['after'] / per['before']:.2f} |")
EOF
