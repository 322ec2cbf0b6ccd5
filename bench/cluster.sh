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
