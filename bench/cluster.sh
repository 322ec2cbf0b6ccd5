#!/usr/bin/env bash
# Cluster mode's cost (issue 19): `say` -> `ok` and delivery latency of one lanchat-server alone
# and of one node in cluster mode (its `ok` waits for JetStream's ack), with nats-server -js on
# loopback. Bounded: 3000 messages per run, each run at most 60 s. Build first:
#   cargo build --release -p lanchat-server --bin lanchat-server -p lanchat-tests --bin lanchat-load
# WINDOWS="1 1 32" runs those windows in turn on one server (the first run after a node starts
# includes its start-up: see ARCHITECTURE.md).
set -u
R=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
D=$(mktemp -d)
trap 'kill $NATS_PID 2>/dev/null; rm -rf "$D"' EXIT
"$NATS" -js -a 127.0.0.1 -p -1 -sd "$D/nats" > "$D/nats.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 100); do grep -q "Server is ready" "$D/nats.log" && break; sleep 0.1; done
URL=nats://$(grep -o "client connections on [0-9.:]*" "$D/nats.log" | awk '{print $4}')
run() {
  local label=$1; shift
  "$R/lanchat-server" --listen 127.0.0.1:0 --no-announce --no-tls --rate-per-sec 0 "$@" > "$D/out" 2> "$D/err" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$D/out" && break; sleep 0.05; done
  local addr; addr=$(grep -m1 listening "$D/out" | cut -d' ' -f2)
  for w in ${WINDOWS:-1 1 32}; do
    echo "== $label window=$w"
    timeout 60 "$R/lanchat-load" --addr "$addr" --json --timeout 30 fanout --rooms 1 --members 2 \
        --senders 1 --messages 3000 --window "$w" --settle-ms 100 \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k: d[k] for k in ("completed", "messages_per_s", "deliveries", "lost", "errors")}, "latency_ms", d["latency_ms"])'
  done
  kill $pid; wait $pid 2>/dev/null
}
run single
run cluster --cluster "$URL"

# --- fan-out: one server against two cluster nodes (issue 19) ----------------------------------
# FANOUT=1 bench/cluster.sh: the members of 1 room x 100 x 10 senders spread over two nodes (every
# other connection), deliveries per CPU-second of all the server processes (both nodes and
# nats-server) against one lanchat-server alone; then the same at a fixed 100,000 deliveries/s
# for the p99. ROUNDS rounds, alternating; servers pinned to CPU 1, the generator to CPU 0. The
# clock starts 3 s after setup: a node's first second (it collects the others' member lists
# before it reads the stream) is not the steady state measured here.
[ "${FANOUT:-0}" = 1 ] || exit 0
start() { # start ARGS...: a lanchat-server pinned to CPU 1; prints "PID ADDR"
  local out; out=$(mktemp -p "$D")
  XDG_STATE_HOME=$D taskset -c 1 "$R/lanchat-server" --listen 127.0.0.1:0 --no-announce --no-tls \
    --rate-per-sec 0 --max-per-ip 100000 --max-clients 100000 "$@" > "$out" 2>/dev/null &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  echo "$pid $(grep -m1 listening "$out" | cut -d' ' -f2)"
}
taskset -acp 1 "$NATS_PID" > /dev/null
row() { # row LABEL LOAD-ARGS...: one run; prints the figures
  local label=$1; shift
  local r
  r=$(taskset -c 0 timeout 120 "$R/lanchat-load" --json --timeout 60 "$@") || true
  python3 - "$label" "$r" <<'PY'
import json, sys
d = json.loads(sys.argv[2]); l = d["latency_ms"]
print("%s: %.2f M deliveries/server-CPU-s, %.2f M/s, p50 %s p99 %s ms, lost %s errors %s" % (
    sys.argv[1], d["deliveries_per_server_cpu_s"] / 1e6, d["deliveries_per_s"] / 1e6,
    l["p50"], l["p99"], d["lost"], d["errors"]))
PY
}
MAX=(fanout --rooms 1 --members 100 --senders 10 --messages 1000 --settle-ms 3000)
FIXED=(fanout --rooms 1 --members 100 --senders 10 --messages 505 --rate 1010 --window 1000 --settle-ms 3000)
for round in $(seq "${ROUNDS:-3}"); do
  for shape in MAX FIXED; do
    declare -n ARGS=$shape
    read -r P1 A1 < <(start)
    row "single $shape round $round" --addr "$A1" --server-pid "$P1" "${ARGS[@]}"
    kill "$P1"; wait "$P1" 2>/dev/null
    read -r P1 A1 < <(start --cluster "$URL" --cluster-name "b$round$shape")
    read -r P2 A2 < <(start --cluster "$URL" --cluster-name "b$round$shape")
    row "2 nodes $shape round $round" --addr "$A1" --node "$A2" --server-pid "$P1" \
      --also-pid "$P2" --also-pid "$NATS_PID" "${ARGS[@]}"
    kill "$P1" "$P2"; wait "$P1" "$P2" 2>/dev/null
  done
done
