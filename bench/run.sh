#!/usr/bin/env bash
# Side-by-side benchmark of lanchat-server, Redis pub/sub and ngircd (issue 9), and of lanchat
# with and without --data-dir (issue 7). Writes the results into BENCHMARKS.md (between the
# results markers) and the raw reports into bench/results.jsonl.
#
#   bench/run.sh             # everything, about 12 minutes on 2 cores
#   ROUNDS=1 bench/run.sh    # one round per comparison, for a quick look
#   IDLE_ROUNDS=5            # alternating registration runs of lanchat and Redis (the default)
#
# Everything listens on 127.0.0.1 only, every run is bounded by a message count and a timeout,
# and every process started here is stopped on exit (trap). Installing the peers needs root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
IDLE_ROUNDS=${IDLE_ROUNDS:-5}
RESULTS=$ROOT/bench/results.jsonl
WORK=$(mktemp -d /tmp/lanchat-bench.XXXXXX)
SERVER_PID=""
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

# --- peers from the system packages ------------------------------------------------------------
install_peers() {
    if command -v redis-server >/dev/null && command -v ngircd >/dev/null; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "run as root, or first: apt-get install -y redis-server ngircd" >&2
        exit 1
    fi
    log "installing redis-server and ngircd"
    # Keep the packages' own services from starting (ngircd's default listens on every
    # interface): policy-rc.d answers "not allowed" for the duration of the install.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server ngircd
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
}

# --- servers -----------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listening() { # PORT PID
    local i
    for i in $(seq 1 100); do
        if ss -Hltn "sport = :$1" | grep -q .; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "server died at start" >&2; return 1; }
        sleep 0.1
    done
    echo "server not listening on $1" >&2
    return 1
}

# Each start_* sets SERVER_PID and ADDR and records the pid for the exit trap.
start_lanchat() { # [extra flags]
    : >"$WORK/lanchat.out"
    "${SERVER_ON[@]}" "$ROOT/target/release/lanchat-server" --listen 127.0.0.1:0 --no-announce --rate-per-sec 0 \
        --max-per-ip 100000 --max-clients 100000 "$@" >"$WORK/lanchat.out" 2>>"$WORK/lanchat.err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for i in $(seq 1 100); do
        # The fingerprint line follows the listening lines (none with --no-tls).
        if grep -q '^tls_sha256 ' "$WORK/lanchat.out" ||
            { grep -q '^listening 127.0.0.1:' "$WORK/lanchat.out" && [[ " $* " == *" --no-tls "* ]]; }; then
            break
        fi
        sleep 0.1
    done
    ADDR=$(sed -n 's/^listening \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$WORK/lanchat.out" | head -1)
    [ -n "$ADDR" ] || { echo "lanchat-server did not start" >&2; exit 1; }
}

start_redis() {
    local port
    port=$(free_port)
    "${SERVER_ON[@]}" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --protected-mode yes --maxclients 20000 --daemonize no --dir "$WORK" \
        >>"$WORK/redis.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    ADDR=127.0.0.1:$port
    wait_listening "$port" "$SERVER_PID"
}

start_ngircd() {
    local port
    port=$(free_port)
    sed -e "s/@PORT@/$port/" -e "s#@PIDFILE@#$WORK/ngircd.pid#" \
        "$ROOT/bench/ngircd.conf" >"$WORK/ngircd.conf"
    "${SERVER_ON[@]}" ngircd --nodaemon --config "$WORK/ngircd.conf" >>"$WORK/ngircd.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    ADDR=127.0.0.1:$port
    wait_listening "$port" "$SERVER_PID"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

start_server() { # lanchat|redis|ngircd [lanchat flags]
    local s=$1
    shift
    case $s in
        lanchat) start_lanchat "$@" ;;
        redis) start_redis ;;
        ngircd) start_ngircd ;;
    esac
}

proto_args() { # server -> generator flags
    case $1 in
        lanchat) echo "--proto lanchat" ;;
        redis) echo "--proto redis" ;;
        # ngircd's listen backlog is 10: connect fewer at once than that, or SYNs are dropped
        # and retried for seconds.
        ngircd) echo "--proto irc --irc-oper bench:bench --connect-concurrency 8" ;;
    esac
}

# Percentage of all CPUs busy over half a second (other people's compilers share this machine).
cpu_busy_pct() {
    local u1 n1 s1 i1 w1 q1 sq1 st1 u2 n2 s2 i2 w2 q2 sq2 st2
    read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
    sleep 0.5
    read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ </proc/stat
    local busy=$(((u2 + n2 + s2 + q2 + sq2 + st2) - (u1 + n1 + s1 + q1 + sq1 + st1)))
    local idle=$(((i2 + w2) - (i1 + w1)))
    echo $((100 * busy / (busy + idle + 1)))
}

# Wait (at most 15 s) until the machine is quiet before a measurement; BUSY keeps the last figure.
BUSY=0
wait_quiet() {
    local i
    for i in $(seq 1 30); do
        BUSY=$(cpu_busy_pct)
        if [ "$BUSY" -lt 15 ]; then return 0; fi
    done
    log "machine still ${BUSY} % busy after 15 s; measuring anyway"
}

# One measured run against a fresh server: LABEL SERVER ROUND [--lanchat-flags "..."] -- GENERATOR ARGS
N=0
measure() {
    local label=$1 server=$2 round=$3
    shift 3
    local sflags=()
    if [ "$1" = --lanchat-flags ]; then
        read -r -a sflags <<<"$2"
        shift 2
    fi
    [ "$1" = -- ] && shift
    start_server "$server" "${sflags[@]}"
    wait_quiet
    N=$((N + 1))
    # `@TLS@` in the generator's arguments stands for the server's certificate fingerprint.
    local args=() a fp=""
    [ "$server" = lanchat ] && fp=$(sed -n 's/^tls_sha256 //p' "$WORK/lanchat.out")
    for a in "$@"; do args+=("${a//@TLS@/$fp}"); done
    local out rc=0
    # shellcheck disable=SC2046
    out=$("${GEN_ON[@]}" timeout 180 "$LOAD" --json --timeout 120 --addr "$ADDR" --server-pid "$SERVER_PID" \
        --count-syscalls --prefix "g$N" $(proto_args "$server") "${args[@]}") || rc=$?
    stop_server
    if [ -z "$out" ]; then
        out='{"completed":false,"first_error":"generator failed (exit '"$rc"')"}'
    fi
    printf '{"label":"%s","server":"%s","round":%s,"busy_before":%s,"server_flags":"%s","args":"%s","report":%s}\n' \
        "$label" "$server" "$round" "$BUSY" "${sflags[*]}" "$*" "$out" >>"$RESULTS"
    log "$label $server round $round: $(summary <<<"$out")"
}

summary() {
    python3 "$ROOT/bench/report.py" --summary
}

# --- the benchmark -----------------------------------------------------------------------------
install_peers
# The latency plot needs matplotlib (the tables do not).
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    python3 -m pip install --quiet matplotlib >&2 || log "matplotlib not installed: no latency plot"
fi
log "building release binaries"
cargo build --release -p lanchat-server >&2
cargo build --release -p lanchat-tests --bin lanchat-load >&2
LOAD=$ROOT/target/release/lanchat-load

ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n)"
: >"$RESULTS"
START=$(date +%s)

SERVERS=(lanchat redis ngircd)
# Fan-out at max rate, each window bounded at 32 messages in flight per sender. About 10 million
# deliveries each, so that a run uses seconds of server CPU, not a few hundred milliseconds.
# Every sender writes each message in its own write() and lets the others run before the next,
# as people's clients do (issue 17); FAN_B_BATCHED is the old batched generator, for comparison.
FAN_A=(fanout --rooms 1 --members 100 --senders 10 --messages 12000)
FAN_B=(fanout --rooms 1 --members 1000 --senders 5 --messages 2000)
FAN_C=(fanout --rooms 50 --members 20 --senders 1 --messages 6000)
FAN_B_BATCHED=("${FAN_B[@]}" --batched)
# A busy office: 500 people in one room, 499 of them sending 2 messages/s each (a receiver that
# does not send is needed), for 10 s: 5 million deliveries at a fixed rate.
OFFICE=(fanout --rooms 1 --members 500 --senders 499 --messages 20 --rate 998 --window 1000)
# 1010 messages/s to 99 receivers = 100,000 deliveries/s for 5 s.
RATE=(fanout --rooms 1 --members 100 --senders 10 --messages 505 --rate 1010 --window 1000)
MIXED=(mixed --rooms 10 --members 20 --senders 2 --messages 16000 --dm-every 4 --churners 2)
IDLE=(idle --clients 10000 --hold 1)

for round in $(seq 1 "$ROUNDS"); do
    # Alternate the order of the servers from round to round.
    order=("${SERVERS[@]}")
    if [ $((round % 2)) = 0 ]; then order=(ngircd redis lanchat); fi
    for s in "${order[@]}"; do measure "fanout-1x100x10" "$s" "$round" -- "${FAN_A[@]}"; done
    for s in "${order[@]}"; do measure "fanout-1x1000x5" "$s" "$round" -- "${FAN_B[@]}"; done
    for s in "${order[@]}"; do measure "fanout-50x20x1" "$s" "$round" -- "${FAN_C[@]}"; done
    for s in lanchat redis; do measure "office-1x500x499" "$s" "$round" -- "${OFFICE[@]}"; done
    for s in lanchat redis; do measure "batched-1x1000x5" "$s" "$round" -- "${FAN_B_BATCHED[@]}"; done
    # issue 7: the same one-room fan-out with durable history, alternating with in-memory.
    measure "datadir-off-1x100x10" lanchat "$round" -- "${FAN_A[@]}"
    rm -rf "$WORK/data"
    mkdir -p "$WORK/data"
    measure "datadir-on-1x100x10" lanchat "$round" --lanchat-flags "--data-dir $WORK/data" -- "${FAN_A[@]}"
    # issue 15: the same fan-outs with every client over TLS, alternating with plain TCP.
    measure "tls-off-1x100x10" lanchat "$round" -- "${FAN_A[@]}"
    measure "tls-on-1x100x10" lanchat "$round" -- --tls @TLS@ "${FAN_A[@]}"
    measure "tls-off-1x1000x5" lanchat "$round" -- "${FAN_B[@]}"
    measure "tls-on-1x1000x5" lanchat "$round" -- --tls @TLS@ "${FAN_B[@]}"
done
for round in 1 2 3; do
    for s in "${SERVERS[@]}"; do measure "rate-100k" "$s" "$round" -- "${RATE[@]}"; done
done
for round in 1 2 3; do
    for s in "${SERVERS[@]}"; do measure "mixed-10x20x2" "$s" "$round" -- "${MIXED[@]}"; done
done
# Registrations and idle memory: one run of 10,000 moves by a fifth from run to run here, so
# lanchat and Redis alternate IDLE_ROUNDS times (medians in the report); ngircd (under 600
# registrations/s, 17 s a run) runs once.
for round in $(seq 1 "$IDLE_ROUNDS"); do
    order=(lanchat redis)
    if [ $((round % 2)) = 0 ]; then order=(redis lanchat); fi
    for s in "${order[@]}"; do measure "idle-10000" "$s" "$round" -- "${IDLE[@]}"; done
done
measure "idle-10000" ngircd 1 -- "${IDLE[@]}"

# The generator is not the bottleneck: the many-rooms fan-out split over two generator
# processes (25 rooms each, clocks started at the same instant, not pinned) against one
# lanchat-server.
start_lanchat
wait_quiet
t=$(($(date +%s%3N) + 4000))
HALF=(fanout --rooms 25 --members 20 --senders 1 --messages 6000 --start-at "$t")
out1="$WORK/two-1.json"
out2="$WORK/two-2.json"
timeout 180 "$LOAD" --json --timeout 120 --addr "$ADDR" --server-pid "$SERVER_PID" --prefix ga \
    "${HALF[@]}" >"$out1" &
g1=$!
PIDS+=("$g1")
timeout 180 "$LOAD" --json --timeout 120 --addr "$ADDR" --server-pid "$SERVER_PID" --prefix gb \
    "${HALF[@]}" >"$out2" &
g2=$!
PIDS+=("$g2")
wait "$g1" || true
wait "$g2" || true
stop_server
printf '{"label":"two-generators-50x20x1","server":"lanchat","round":1,"server_flags":"","args":"%s","reports":[%s,%s]}\n' \
    "${HALF[*]}" "$(cat "$out1")" "$(cat "$out2")" >>"$RESULTS"
log "two generators done"

END=$(date +%s)
log "benchmark took $((END - START)) s"
PINNED=()
if [ ${#SERVER_ON[@]} -gt 0 ]; then PINNED=(--pinned); fi
python3 "$ROOT/bench/report.py" "$RESULTS" "$ROOT/BENCHMARKS.md" --duration $((END - START)) --rounds "$ROUNDS" "${PINNED[@]}"
log "results written to BENCHMARKS.md"
