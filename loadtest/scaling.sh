#!/usr/bin/env bash
# Multi-core scaling of one broker: fan-out saturation and QoS 1 pairs with
# 1, 2, 4 and 8 shards, each shard pinned to its own core, the harness on
# cores of its own. Needs at least 16 cores (broker 0-7, harness 8-15);
# prints one table and writes the harness's JSON under $OUT (or ./scaling).
#
#   cargo build --release --bins && bash loadtest/scaling.sh
#
# Goal (issue #8): each scenario's rate with N shards >= 0.8 x N x the
# 1-shard rate. Every run is bounded (--duration, --saturate's own steps,
# `timeout`), and every broker it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-scaling}
mkdir -p "$out"
bin=target/release
cores=$(nproc)
if [ "$cores" -lt 16 ]; then
  echo "scaling.sh: needs 16 cores (broker 0-7, harness 8-15); this machine has $cores" >&2
  exit 2
fi
ulimit -n "$(ulimit -Hn)"

broker=""
stop_broker() {
  if [ -n "$broker" ]; then
    kill "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
    broker=""
  fi
}
trap stop_broker EXIT

# start_broker SHARDS PORT: shardmq on cores 0..SHARDS-1.
start_broker() {
  local shards=$1 port=$2 conf="$out/broker-$1.conf"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n' "$port" >"$conf"
  taskset -c "0-$((shards - 1))" "$bin/shardmq" -c "$conf" --shards "$shards" 2>"$out/broker-$shards.log" &
  broker=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$out/broker-$shards.log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "scaling.sh: broker with $shards shard(s) did not start" >&2
  exit 1
}

# field JSON KEY: a top-level number from the harness's --json report.
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

printf '%-7s %22s %22s %18s\n' shards "fanout max pub/s" "delivered msg/s" "pairs QoS 1 msg/s"
port=21883
for shards in 1 2 4 8; do
  port=$((port + 1))
  start_broker "$shards" "$port"
  host="127.0.0.1:$port"
  timeout 600 "$bin/shardmq-load" fanout --host "$host" --cores 8-15 --subscribers 100 \
    --saturate --p99-bound-ms 50 --step-factor 1.4 >"$out/fanout-$shards.txt" 2>&1
  fanout=$(grep -o 'max sustained rate: [0-9]*' "$out/fanout-$shards.txt" | grep -o '[0-9]*$')
  # Pairs: offered load scales with the shards; the delivered rate is what counts.
  timeout 120 "$bin/shardmq-load" pairs --host "$host" --cores 8-15 --pairs $((200 * shards)) \
    --qos 1 --rate $((50000 * shards)) --duration 10s --json >"$out/pairs-$shards.json" 2>/dev/null
  delivered=$(field "$out/pairs-$shards.json" delivered)
  printf '%-7s %22s %22s %18s\n' "$shards" "$fanout" "$((fanout * 100))" "$((delivered / 10))"
  stop_broker
done
