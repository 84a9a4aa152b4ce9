#!/usr/bin/env bash
# TLS side by side: Mosquitto and shardmq, each over plain TCP and over TLS
# (the same certificate: a CA and a server certificate for 127.0.0.1 made
# here with openssl, P-256), one after the other in one run. Per broker
# and transport: QoS 1 pairs (broker CPU per message, latency), a
# connection storm (connections/s, CPU per connection: the TLS handshake
# included; resumed from a ticket where the broker gave one, and again with
# full handshakes, --tls-full-handshakes) and idle connections (broker RSS
# per connection). The broker
# runs on core 0 (shardmq with one shard), the harness on core 1. Prints
# one table; the harness's JSON stays under $OUT.
#
#   cargo build --release --bins && bash loadtest/tls.sh
#
# Settings (environment): BROKERS ("mosquitto shardmq"), OUT
# (target/tls-figures), BIN (target/release), PAIRS (100), RATE (10000),
# DURATION (10s), STORM_RATE (1000), STORM_SECS (5s), IDLE (5000),
# MOSQUITTO (/usr/sbin/mosquitto).
#
# Bounded: every harness call runs under `timeout`; every broker started
# is killed when the script exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BIN:-target/release}
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
out=${OUT:-target/tls-figures}
brokers=${BROKERS:-mosquitto shardmq}
pairs=${PAIRS:-100}
rate=${RATE:-10000}
duration=${DURATION:-10s}
storm_rate=${STORM_RATE:-1000}
storm_secs=${STORM_SECS:-5s}
idle=${IDLE:-5000}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.json

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT

# Certificates.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=tls figures CA" -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=127.0.0.1" -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$out/san.ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
  -CAcreateserial -days 2 -extfile "$out/san.ext" -out "$out/server.pem" 2>/dev/null
# Mosquitto started as root reads its files as user mosquitto.
chmod 644 "$out/server.key" "$out/server.pem" "$out/ca.pem"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # broker transport port
  local conf="$out/$1-$2.conf"
  {
    echo "listener $3 127.0.0.1"
    echo "allow_anonymous true"
    echo "max_queued_messages 100000"
    if [ "$2" = tls ]; then
      echo "certfile $out/server.pem"
      echo "keyfile $out/server.key"
    fi
  } >"$conf"
  case $1 in
    mosquitto) taskset -c 0 "$mosquitto" -c "$conf" >"$out/$1-$2.log" 2>&1 & ;;
    shardmq) taskset -c 0 "$bin/shardmq" -c "$conf" --shards 1 >"$out/$1-$2.log" 2>&1 & ;;
  esac
  pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$3),0.1)" 2>/dev/null && return
    sleep 0.1
  done
  echo "$1 ($2) did not listen on $3; see $out/$1-$2.log" >&2
  exit 1
}

load() { # name transport port scenario args...
  local name=$1 transport=$2 port=$3
  shift 3
  local tls=()
  [ "$transport" = tls ] && tls=(--cafile "$out/ca.pem")
  timeout 120 taskset -c 1 "$bin/shardmq-load" "$@" --host "127.0.0.1:$port" \
    --broker-pid "$pid" --json "${tls[@]}" >"$out/$name.json"
}

for broker in $brokers; do
  for transport in tcp tls; do
    port=$(free_port)
    start "$broker" "$transport" "$port"
    load "$broker-$transport-pairs" "$transport" "$port" pairs --pairs "$pairs" --qos 1 \
      --rate "$rate" --duration "$duration" --warmup 2s
    load "$broker-$transport-storm" "$transport" "$port" connect-storm --rate "$storm_rate" \
      --concurrency 16 --duration "$storm_secs"
    if [ "$transport" = tls ]; then
      load "$broker-$transport-fullstorm" "$transport" "$port" connect-storm \
        --rate "$storm_rate" --concurrency 16 --duration "$storm_secs" --tls-full-handshakes
    fi
    load "$broker-$transport-idle" "$transport" "$port" idle --connections "$idle" \
      --duration 3s
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
  done
done

python3 - "$out" $brokers <<'EOF'
import json, sys
out, brokers = sys.argv[1], sys.argv[2:]
def get(name):
    with open(f"{out}/{name}.json") as f:
        return json.load(f)
rows = []
for b in brokers:
    for t in ("tcp", "tls"):
        p, s, i = get(f"{b}-{t}-pairs"), get(f"{b}-{t}-storm"), get(f"{b}-{t}-idle")
        pu, su = p["broker_usage"] or {}, s["broker_usage"] or {}
        lat, st, idle = p["latency"] or {}, s["storm"] or {}, i["idle"] or {}
        num = lambda v, f: "n/a" if v is None else format(v, f)
        rows.append((f"{b} {t}",
            f'{p["delivered_per_s"]:,.0f} ({p["lost"]} lost)',
            f'{num(pu.get("cpu_us_per_msg"), ".1f")} us',
            f'{num(lat.get("p50_ms"), ".3f")} / {num(lat.get("p99_ms"), ".3f")} ms',
            f'{st.get("connects_per_s", 0):,.0f} ({st.get("connected", 0)} connected, {st.get("failed", 0)} failed)',
            f'{su.get("cpu_s", 0) * 1e6 / max(st.get("connected", 0), 1):.0f} us',
            f'{num(idle.get("rss_per_conn_kib"), ".2f")} KiB ({idle.get("held", 0)} held)'))
head = ("broker", "pairs delivered/s", "CPU/msg", "p50 / p99", "connects/s",
        "CPU/connection", "idle RSS/conn")
for b in brokers:
    s = get(f"{b}-tls-fullstorm")
    st, su = s["storm"] or {}, s["broker_usage"] or {}
    print(f'{b} tls, full handshakes (no resumption): {st.get("connects_per_s", 0):,.0f} connects/s '
          f'({st.get("connected", 0)} connected, {st.get("failed", 0)} failed), '
          f'{su.get("cpu_s", 0) * 1e6 / max(st.get("connected", 0), 1):.0f} us CPU/connection')
print()
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in rows:
    print("| " + " | ".join(r) + " |")
EOF
