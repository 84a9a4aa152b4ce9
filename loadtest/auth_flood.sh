#!/usr/bin/env bash
# p99 latency of one QoS 1 publisher/subscriber pair, without and then with
# a flood of CONNECTs carrying a wrong password against a `$7$` password
# file (made by mosquitto_passwd), in one run against one shardmq.
#
#   cargo build --release --bins
#   bash loadtest/auth_flood.sh [FLOOD_RATE] [SECONDS]
#
# Needs mosquitto_passwd (apt-get install mosquitto) and python3;
# ITERATIONS=N makes the $7$ hash with N PBKDF2 iterations instead (python3). The broker
# runs one shard pinned to core 0 (its verifier threads share that core's
# affinity); the harness and the flood run on core 1 when there is one.
# Prints both runs' latency and the flood's CONNACK codes (5 = not authorised,
# 3 = server busy).
set -euo pipefail
rate=${1:-1000}
secs=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
bin=${CARGO_TARGET_DIR:-$here/../target}/release
dir=$(mktemp -d)
trap 'kill "${broker:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ -n "${ITERATIONS:-}" ]; then
  # A slower $7$ hash than mosquitto_passwd makes (it always uses 101).
  python3 -c 'import base64, hashlib, sys
n = int(sys.argv[1]); salt = b"0123456789ab"
h = hashlib.pbkdf2_hmac("sha512", b"secret", salt, n)
print("alice:$7$%d$%s$%s" % (n, base64.b64encode(salt).decode(), base64.b64encode(h).decode()))' \
    "$ITERATIONS" >"$dir/passwd"
else
  mosquitto_passwd -c -b "$dir/passwd" alice secret
fi
grep -q '^alice:\$7\$' "$dir/passwd"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npassword_file %s\nlog_type error\n' \
  "$port" "$dir/passwd" >"$dir/shardmq.conf"

broker_core=0
load_core=$(( $(nproc) > 1 ? 1 : 0 ))
taskset -c "$broker_core" "$bin/shardmq" -c "$dir/shardmq.conf" --shards 1 &
broker=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done

pairs() {
  taskset -c "$load_core" "$bin/shardmq-load" pairs --host "127.0.0.1:$port" \
    --pairs 1 --qos 1 --rate 1000 --warmup 2s --duration "${secs}s" --json \
    --broker-pid "$broker" --cores 1
}

pairs >"$dir/quiet.json"
taskset -c "$load_core" python3 "$here/auth_flood.py" --port "$port" \
  --rate "$rate" --duration "$((secs + 3))" >"$dir/flood.json" &
flood=$!
sleep 1
pairs >"$dir/flooded.json"
wait "$flood"

python3 - "$dir" "$rate" <<'PY'
import json, sys
d, rate = sys.argv[1], sys.argv[2]
flood = json.load(open(f"{d}/flood.json"))
hash = open(f"{d}/passwd").read().split("$")[2]
print(f"QoS 1 pair, 1000 msg/s, 64 B; flood target {rate} bad CONNECTs/s against $7$ with {hash} iterations")
print(f"{'run':<22}{'delivered':>10}{'lost':>6}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}{'broker CPU %':>14}")
for name in ("quiet", "flooded"):
    r = json.load(open(f"{d}/{name}.json"))
    l, u = r["latency"], r.get("broker_usage") or {}
    cpu = 100 * u["cpu_s"] / r["duration_s"] if u else float("nan")
    print(f"{name:<22}{r['delivered']:>10}{r['lost']:>6}{l['p50_ms']:>9.3f}{l['p99_ms']:>9.3f}"
          f"{l['p99_9_ms']:>10.3f}{l['max_ms']:>9.3f}{cpu:>14.1f}")
print("flood:", json.dumps(flood))
PY
