#!/usr/bin/env bash
# Bridges side by side: the harness's `bridge` scenario through each edge
# broker's bridge into an upstream Mosquitto. Per edge broker (Mosquitto
# 2.0 with a bridge, shardmq with the same bridge section): a fresh
# upstream, the saturation search at QoS 0 and QoS 1 (64 B, 1 publisher at
# the edge, 1 subscriber at the upstream), then the reconnect time after
# the upstream is killed (-9) and restarted on its port. The edge runs on
# core 0, the upstream and the harness on core 1. Prints one table with
# the ratios against Mosquitto; the harness's JSON and the brokers' logs
# stay under $OUT.
#
#   cargo build --release --bins && bash loadtest/bridge.sh
#
# LINK_DELAY_MS=5 puts a proxy holding every byte 5 ms each way between
# the edge's bridge and the upstream (loadtest/delay_proxy.py, on core 1):
# a link with a wide-area round trip, where a bridge's inflight window,
# not its CPU, sets its rate. The reconnect run is skipped then.
#
# Settings (environment): EDGES ("mosquitto shardmq"), OUT (target/bridge),
# DURATION (3s, per saturation step), START_RATE (5000), STEP_FACTOR (1.5),
# MAX_STEPS (10), P99_BOUND_MS (50), DOWN (3s, upstream down),
# MOSQUITTO (/usr/sbin/mosquitto).
#
# Bounded: every harness call runs under `timeout`, so the whole script
# ends within about 11 minutes per edge broker even if a broker stalls
# (about 2 minutes each when they do not). Everything it starts is killed
# when it exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
out=${OUT:-target/bridge}
edges=${EDGES:-mosquitto shardmq}
duration=${DURATION:-3s}
down=${DOWN:-3s}
search=(--saturate --rate "${START_RATE:-5000}" --step-factor "${STEP_FACTOR:-1.5}"
  --max-steps "${MAX_STEPS:-10}" --p99-bound-ms "${P99_BOUND_MS:-50}"
  --duration "$duration" --warmup 1s --grace 3s)

die() {
  echo "bridge.sh: $*" >&2
  exit 2
}
for exe in "$bin/shardmq-load" "$bin/shardmq"; do
  [ -x "$exe" ] || die "$exe is missing: cargo build --release --bins"
done
[ -x "$mosquitto" ] || die "no Mosquitto at $mosquitto (apt-get install mosquitto, or set MOSQUITTO)"
command -v taskset >/dev/null || die "taskset is missing (util-linux)"
command -v python3 >/dev/null || die "python3 is missing (free ports, the table)"
[ "$(nproc)" -ge 2 ] || die "needs 2 cores (edge on 0, upstream and harness on 1)"
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.err

# Stopped on exit: every broker started here, the harness run in progress
# (`timeout` passes the signal on) and the upstream a reconnect run
# restarted, by the pid it wrote (Mosquitto started as root changes its
# user, which would let it outlive a harness killed by a signal). Brokers
# are disowned: still children of this shell, which reaps them, but the
# reconnect measurement's kill -9 of the upstream prints no job notice.
started=()
harness_pid=
restarted_pid_file=$(cd "$out" && pwd)/restarted-upstream.pid
rm -f "$restarted_pid_file"
cleanup() {
  if [ -n "$harness_pid" ]; then
    kill "$harness_pid" 2>/dev/null || true
    wait "$harness_pid" 2>/dev/null || true
  fi
  if [ -s "$restarted_pid_file" ]; then
    started+=("$(cat "$restarted_pid_file")")
    rm -f "$restarted_pid_file"
  fi
  for pid in "${started[@]}"; do
    stop "$pid"
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME CORE PORT COMMAND...: runs COMMAND pinned to CORE, logging to
# $out/NAME.log, and waits until PORT accepts connections; sets $pid.
start() {
  local name=$1 core=$2 port=$3
  shift 3
  taskset -c "$core" "$@" >"$out/$name.log" 2>&1 </dev/null &
  pid=$!
  disown "$pid"
  started+=("$pid")
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "bridge.sh: $name did not listen on port $port; its log:" >&2
  tail -5 "$out/$name.log" >&2
  exit 1
}

# stop PID: SIGTERM, and SIGKILL after 3 s; forgets PID.
stop() {
  local left=()
  for p in "${started[@]}"; do
    [ "$p" = "$1" ] || left+=("$p")
  done
  started=("${left[@]}")
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 60); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -9 "$1" 2>/dev/null || true
}

# edge_conf PORT UPSTREAM_PORT: the edge's config, one bridge forwarding
# bench/# to the upstream. Mosquitto's syntax, which shardmq reads too.
edge_conf() {
  cat <<EOF
listener $1 127.0.0.1
allow_anonymous true
max_queued_messages 100000

connection bench-upstream
address 127.0.0.1:$2
topic bench/# out 1
cleansession true
clientid bridge-edge-$$
notifications false
bridge_protocol_version mqttv311
keepalive_interval 60
EOF
}

# harness NAME TIMEOUT ARGS...: one harness run on core 1, its JSON in
# $out/NAME.json and its stderr in $out/NAME.err. False if it failed.
harness() {
  local name=$1 limit=$2 status=0
  shift 2
  timeout "$limit" taskset -c 1 "$bin/shardmq-load" bridge --cores 1 --json "$@" \
    >"$out/$name.json" 2>"$out/$name.err" &
  harness_pid=$!
  wait "$harness_pid" || status=$?
  harness_pid=
  return "$status"
}

for edge in $edges; do
  up_port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n' "$up_port" \
    >"$out/upstream.conf"
  start "upstream-$edge" 1 "$up_port" "$mosquitto" -c "$out/upstream.conf"
  up_pid=$pid
  link_port=$up_port
  if [ -n "${LINK_DELAY_MS:-}" ]; then
    link_port=$(free_port)
    start "delay-$edge" 1 "$link_port" python3 loadtest/delay_proxy.py "$link_port" "$up_port" "$LINK_DELAY_MS"
    delay_pid=$pid
  fi
  edge_port=$(free_port)
  edge_conf "$edge_port" "$link_port" >"$out/edge-$edge.conf"
  case $edge in
    mosquitto) start "edge-$edge" 0 "$edge_port" "$mosquitto" -c "$out/edge-$edge.conf" ;;
    shardmq) start "edge-$edge" 0 "$edge_port" "$bin/shardmq" -c "$out/edge-$edge.conf" --shards 1 ;;
    *) die "unknown edge broker $edge (mosquitto or shardmq)" ;;
  esac
  edge_pid=$pid
  where=(--edge "127.0.0.1:$edge_port" --upstream "127.0.0.1:$up_port" --broker-pid "$edge_pid")
  delivers=yes
  for qos in 0 1; do
    echo "== $edge edge, QoS $qos: saturation search" >&2
    if ! harness "$edge-qos$qos" 300 "${where[@]}" --qos "$qos" "${search[@]}"; then
      echo "   failed: $(tail -1 "$out/$edge-qos$qos.err")" >&2
      # The link check failed: nothing more to measure through this edge.
      if grep -q "the bridge did not deliver" "$out/$edge-qos$qos.err"; then
        delivers=no
        break
      fi
    fi
  done
  if [ "$delivers" = yes ] && [ -z "${LINK_DELAY_MS:-}" ]; then
    echo "== $edge edge: reconnect after kill -9 of the upstream (down $down)" >&2
    harness "$edge-reconnect" 120 "${where[@]}" --qos 1 --rate 1000 \
      --kill-upstream "$up_pid" --down "$down" --reconnect-timeout 60s \
      --restart-upstream "sh -c 'echo \$\$ >$restarted_pid_file; exec $mosquitto -c {conf}'" ||
      echo "   failed: $(tail -1 "$out/$edge-reconnect.err")" >&2
    # The harness has stopped the upstream it restarted.
    rm -f "$restarted_pid_file"
  fi
  stop "$edge_pid"
  stop "$up_pid"
  if [ -n "${LINK_DELAY_MS:-}" ]; then
    stop "$delay_pid"
  fi
done

python3 - "$out" $edges <<'EOF'
import json, os, sys

out, edges = sys.argv[1], sys.argv[2:]

def load(name):
    try:
        with open(f"{out}/{name}.json") as f:
            return json.load(f), None
    except (OSError, ValueError):
        pass
    try:
        with open(f"{out}/{name}.err") as f:
            lines = [l.strip() for l in f if l.strip()]
        return None, lines[-1] if lines else "no result"
    except OSError:
        if name.endswith("-reconnect") and os.environ.get("LINK_DELAY_MS"):
            return None, "not run (LINK_DELAY_MS set)"
        return None, "not run (an earlier run showed the bridge does not deliver)"

def best(search):
    rate = search.get("max_sustained_rate")
    step = next((s for s in search["steps"] if s["passed"] and s["rate"] == rate), None)
    if step is None:
        return None
    r = step["report"]
    cpu = (r.get("broker_usage") or {}).get("cpu_us_per_msg")
    all_passed = all(s["passed"] for s in search["steps"])
    return {"msgs": r["delivered_per_s"], "p50": r["latency"]["p50_ms"],
            "p99": r["latency"]["p99_ms"], "cpu": cpu, "capped": all_passed}

def fmt(v, digits=3):
    return "-" if v is None else f"{v:,.{digits}f}"

bound = None
rows, notes = {}, []
for edge in edges:
    for qos in (0, 1):
        search, err = load(f"{edge}-qos{qos}")
        row = best(search) if search else None
        if search:
            bound = search["p99_bound_ms"]
            if row is None:
                notes.append(f"{edge} QoS {qos}: no rate passed; lower START_RATE")
            elif row["capped"]:
                notes.append(f"{edge} QoS {qos}: every step passed; raise MAX_STEPS for its limit")
        else:
            notes.append(f"{edge} QoS {qos}: {err}")
        rows[edge, qos] = row
    rec, err = load(f"{edge}-reconnect")
    rows[edge, "reconnect"] = rec
    if rec is None:
        notes.append(f"{edge} reconnect: {err}")

delay = os.environ.get("LINK_DELAY_MS")
link = f", link delayed {delay} ms each way" if delay else ""
print(f"bridge: 1 publisher at the edge -> bridge -> 1 subscriber at an upstream Mosquitto, 64 B,"
      f" highest rate with p99 <= {bound} ms; edge on core 0, upstream + harness on core 1{link}")
print(f"  {'edge broker':<12} {'QoS':>3} {'msgs/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'edge CPU us/msg':>16}")
base = edges[0]
for qos in (0, 1):
    for edge in edges:
        r = rows[edge, qos]
        if r is None:
            print(f"  {edge:<12} {qos:>3} {'-':>10} {'-':>8} {'-':>8} {'-':>16}")
            continue
        print(f"  {edge:<12} {qos:>3} {fmt(r['msgs'], 0):>10} {fmt(r['p50']):>8} {fmt(r['p99']):>8} {fmt(r['cpu'], 2):>16}")
    b = rows[base, qos]
    for edge in edges[1:]:
        r = rows[edge, qos]
        if r and b:
            ratio = lambda k: "-" if not (r[k] and b[k]) else f"x{r[k] / b[k]:.2f}"
            print(f"  {edge + '/' + base:<16} {ratio('msgs'):>10} {ratio('p50'):>8} {ratio('p99'):>8} {ratio('cpu'):>16}")
print("reconnect (upstream killed -9, restarted on its port; QoS 1, 1000 msg/s):")
for edge in edges:
    r = rows[edge, "reconnect"]
    if r is None:
        print(f"  {edge:<12} -")
        continue
    back = r["reconnect_s"]
    since_kill = "-" if back is None else f"{r['down_s'] + back:.2f}"
    print(f"  {edge:<12} upstream down {r['down_s']:.2f} s; the first message published after it was back"
          f" arrived {fmt(back, 2)} s later ({since_kill} s after the kill;"
          f" {r['kept_delivered']} older messages kept by the edge)")
for n in notes:
    print(f"  note: {n}")
EOF
