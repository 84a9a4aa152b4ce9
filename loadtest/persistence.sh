#!/usr/bin/env bash
# Durable state side by side: QoS 1 saturation (64 B, persistent sessions)
# through shardmq with persistence off, `persistence_sync written` and
# `fsync` (group commit, 10 ms), and Mosquitto 2.0 with `persistence
# true` (its default autosave: a snapshot every 30 minutes), one after the
# other in one `shardmq-load compare` run: brokers on core 0, harness on
# core 1. Then the same with 100 pairs. Ratios are against the first
# broker (shardmq, persistence off).
#
#   cargo build --release --bins && bash loadtest/persistence.sh
#
# Settings (environment): OUT (target/persistence), DURATION (3s per
# saturation step), START_RATE (2000), PAIRS ("1 100"), MOSQUITTO
# (/usr/sbin/mosquitto). Every run is bounded by `timeout`; the journal
# directories are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
out=${OUT:-target/persistence}
for exe in "$bin/shardmq-load" "$bin/shardmq"; do
  [ -x "$exe" ] || { echo "persistence.sh: $exe is missing: cargo build --release --bins" >&2; exit 2; }
done
[ -x "$mosquitto" ] || { echo "persistence.sh: no Mosquitto at $mosquitto" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
trap 'rm -rf "$out"/journal-*' EXIT

# extra NAME LINES...: config lines appended to the generated {conf}.
extra() {
  local name=$1
  shift
  printf '%s\n' "$@" >"$out/$name.extra"
}
mkdir -p "$out/journal-written" "$out/journal-fsync" "$out/journal-mosquitto"
extra off "persistence false"
extra written "persistence true" "persistence_location $out/journal-written" "persistence_sync written"
extra fsync "persistence true" "persistence_location $out/journal-fsync" \
  "persistence_sync fsync" "persistence_commit_interval 10"
# As root, Mosquitto would drop to its own user and could not save.
as_root=()
[ "$(id -u)" = 0 ] && as_root=("user root")
extra mosquitto "persistence true" "persistence_location $out/journal-mosquitto/" "${as_root[@]}"

# Each broker runs `{conf}` plus its extra lines (conf_plus.sh joins them).
plus="sh $(pwd)/loadtest/conf_plus.sh {conf}"
brokers=()
for mode in off written fsync; do
  brokers+=(--broker "shardmq-$mode=cmd:$plus $out/$mode.extra $bin/shardmq -c {conf}.plus --shards 1")
done
brokers+=(--broker "mosquitto-persist=cmd:$plus $out/mosquitto.extra $mosquitto -c {conf}.plus")

for pairs in ${PAIRS:-1 100}; do
  echo "== QoS 1, 64 B, persistent sessions, $pairs pair(s): saturation" >&2
  timeout 900 "$bin/shardmq-load" compare "${brokers[@]}" \
    --broker-cores 0 --load-cores 1 --svg "$out/pairs-$pairs.svg" \
    pairs --pairs "$pairs" --persistent-sessions --qos 1 --payload 64 \
    --saturate --rate "${START_RATE:-2000}" --p99-bound-ms 50 \
    --duration "${DURATION:-3s}" --warmup 1s --grace 3s |
    tee "$out/pairs-$pairs.txt"
done
