#!/usr/bin/env bash
# Durable state side by side: the highest QoS 1 rate (64 B, persistent
# sessions, p99 <= 50 ms) through shardmq with persistence off,
# `persistence_sync written` and `fsync` (group commit, 10 ms), and through
# Mosquitto 2.0 with `persistence true` (its default autosave: a snapshot
# every 30 minutes), one after the other: each broker alone on core 0, the
# harness on core 1. For 1 pair and for 100 pairs. Prints a table with the
# ratios against shardmq with persistence off; JSON under $OUT.
#
#   cargo build --release --bins && bash loadtest/persistence.sh
#
# Settings (environment): OUT (target/persistence), DURATION (2s per
# saturation step), START_RATE (2000), PAIRS ("1 100"), BROKERS
# ("shardmq-off shardmq-written shardmq-fsync mosquitto"), MOSQUITTO
# (/usr/sbin/mosquitto). Every harness run is bounded by `timeout`; each
# broker is stopped after its runs, and its journal removed.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
out=${OUT:-target/persistence}
brokers=${BROKERS:-shardmq-off shardmq-written shardmq-fsync mosquitto}
pairs_list=${PAIRS:-1 100}
for exe in "$bin/shardmq-load" "$bin/shardmq"; do
  [ -x "$exe" ] || { echo "persistence.sh: $exe is missing: cargo build --release --bins" >&2; exit 2; }
done
[ -x "$mosquitto" ] || { echo "persistence.sh: no Mosquitto at $mosquitto" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.json "$out"/*.err
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$out"/journal-*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# conf NAME PORT: the broker's config (Mosquitto syntax, read by both).
conf() {
  local name=$1 port=$2 dir="$out/journal-$1"
  mkdir -p "$dir"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n' "$port"
  case $name in
    shardmq-off) echo "persistence false" ;;
    shardmq-written) printf 'persistence true\npersistence_location %s\npersistence_sync written\n' "$dir" ;;
    shardmq-fsync)
      printf 'persistence true\npersistence_location %s\npersistence_sync fsync\n' "$dir"
      echo "persistence_commit_interval 10"
      ;;
    mosquitto)
      printf 'persistence true\npersistence_location %s/\n' "$dir"
      # As root, Mosquitto would drop to its own user and could not save.
      if [ "$(id -u)" = 0 ]; then echo "user root"; fi
      ;;
    *) echo "persistence.sh: unknown broker $name" >&2; exit 2 ;;
  esac
}

for name in $brokers; do
  port=$(free_port)
  conf "$name" "$port" >"$out/$name.conf"
  case $name in
    mosquitto) taskset -c 0 "$mosquitto" -c "$out/$name.conf" >"$out/$name.log" 2>&1 & ;;
    *) taskset -c 0 "$bin/shardmq" -c "$out/$name.conf" --shards 1 >"$out/$name.log" 2>&1 & ;;
  esac
  pid=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  for pairs in $pairs_list; do
    echo "== $name, $pairs pair(s): saturation" >&2
    timeout 600 taskset -c 1 "$bin/shardmq-load" pairs --host "127.0.0.1:$port" --cores 1 \
      --json --broker-pid "$pid" --pairs "$pairs" --persistent-sessions --qos 1 --payload 64 \
      --saturate --rate "${START_RATE:-2000}" --p99-bound-ms 50 \
      --duration "${DURATION:-2s}" --warmup 1s --grace 3s \
      >"$out/$name-$pairs.json" 2>"$out/$name-$pairs.err" ||
      echo "   failed: $(tail -1 "$out/$name-$pairs.err")" >&2
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
done

python3 - "$out" "$pairs_list" $brokers <<'EOF'
import json, sys

out, pairs_list, brokers = sys.argv[1], sys.argv[2].split(), sys.argv[3:]

def best(name, pairs):
    try:
        with open(f"{out}/{name}-{pairs}.json") as f:
            search = json.load(f)
    except (OSError, ValueError):
        return None
    rate = search.get("max_sustained_rate")
    step = next((s for s in search["steps"] if s["passed"] and s["rate"] == rate), None)
    if step is None:
        return None
    r = step["report"]
    cpu = (r.get("broker_usage") or {}).get("cpu_us_per_msg")
    return {"msgs": r["delivered_per_s"], "p99": r["latency"]["p99_ms"], "cpu": cpu,
            "capped": all(s["passed"] for s in search["steps"])}

def fmt(v, d=1):
    return "-" if v is None else f"{v:,.{d}f}"

print("QoS 1, 64 B, persistent sessions; highest rate with p99 <= 50 ms; broker on core 0, harness on core 1")
print(f"  {'broker':<17} {'pairs':>5} {'msgs/s':>9} {'p99 ms':>7} {'CPU us/msg':>10} {'x rate':>7} {'x CPU':>6}")
for pairs in pairs_list:
    base = best(brokers[0], pairs)
    for name in brokers:
        r = best(name, pairs)
        if r is None:
            print(f"  {name:<17} {pairs:>5} {'-':>9}")
            continue
        ratio = lambda k: "-" if not (base and base[k] and r[k]) else f"x{r[k] / base[k]:.2f}"
        capped = " (every step passed)" if r["capped"] else ""
        print(f"  {name:<17} {pairs:>5} {fmt(r['msgs'], 0):>9} {fmt(r['p99'], 2):>7} {fmt(r['cpu'], 2):>10}"
              f" {ratio('msgs'):>7} {ratio('cpu'):>6}{capped}")
EOF
