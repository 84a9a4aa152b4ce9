#!/usr/bin/env python3
"""Durable state at size: queue N QoS 1 messages of SIZE bytes for one
offline persistent session (over 1 GB by default), then report the journal's
disk bytes per queued message, kill -9 the broker, restart it, and report
the time until the session's CONNACK (recovery) and the broker's memory.

    cargo build --release --bins && python3 loadtest/recovery.py [N] [SIZE]

Defaults: N = 1,000,000 messages of SIZE = 1,000 bytes. The broker runs
with 2 shards on core 0 (taskset) with `persistence true`,
`max_queued_messages 0` (its cap, 1,000,000) and no byte limit. Everything
it starts is killed at the end; the journal directory is removed.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

# The broker binary (another CARGO_TARGET_DIR: set SHARDMQ_BROKER).
BROKER = os.environ.get("SHARDMQ_BROKER", "target/release/shardmq")


def varint(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(kind, body):
    return bytes([kind]) + varint(len(body)) + body


def utf8(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def connect(port, client_id, clean):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    flags = 0x02 if clean else 0x00
    body = utf8("MQTT") + bytes([4, flags]) + struct.pack(">H", 600) + utf8(client_id)
    s.sendall(packet(0x10, body))
    ack = recv_exact(s, 4)
    assert ack[0] == 0x20 and ack[3] == 0, f"CONNACK {ack!r}"
    return s, bool(ack[2] & 1)


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError("connection closed")
        out += chunk
    return bytes(out)


def wait_port(port, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"recovery.py: the broker never listened on {port}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start(conf, port):
    proc = subprocess.Popen(
        ["taskset", "-c", "0", BROKER, "-c", conf, "--shards", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc


def publish_all(port, n, size):
    """N QoS 1 PUBLISHes, up to 1,000 unacknowledged; waits for every PUBACK."""
    s, _ = connect(port, "rec-pub", True)
    payload = b"x" * size
    window, sent, acked, buf = 1000, 0, 0, b""
    while acked < n:
        batch = bytearray()
        while sent < n and sent - acked < window:
            pid = sent % 65535 + 1
            batch += packet(0x32, utf8("rec/x") + struct.pack(">H", pid) + payload)
            sent += 1
        if batch:
            s.sendall(batch)
        buf += s.recv(65536)
        while len(buf) >= 4:
            assert buf[0] == 0x40, f"expected PUBACK, got {buf[:4]!r}"
            buf = buf[4:]
            acked += 1
    s.close()


def workspace(name):
    """A temporary directory, a free port and a broker configuration there
    (persistence on, unbounded queues): (directory, port, config path)."""
    work = tempfile.mkdtemp(prefix=f"shardmq-{name}-")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    conf = os.path.join(work, "broker.conf")
    with open(conf, "w") as f:
        f.write(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {work}\nmax_queued_messages 0\nmax_queued_bytes 0\n"
        )
    return work, port, conf


def stop(proc, work):
    """Kills the broker and removes its directory."""
    proc.kill()
    proc.wait()
    shutil.rmtree(work, ignore_errors=True)


def arguments(script, n, size):
    """N and SIZE from the command line (`n`, `size` by default), with the
    repository as the working directory and the broker binary checked."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else n
    size = int(sys.argv[2]) if len(sys.argv) > 2 else size
    os.chdir(os.path.join(os.path.dirname(__file__), ".."))
    if not os.access(BROKER, os.X_OK):
        sys.exit(f"{script}: {BROKER} is missing: cargo build --release --bins")
    return n, size


def main():
    n, size = arguments("recovery.py", 1_000_000, 1000)
    work, port, conf = workspace("recovery")
    proc = start(conf, port)
    try:
        s, _ = connect(port, "rec-sub", False)
        s.sendall(packet(0x82, struct.pack(">H", 1) + utf8("rec/#") + bytes([1])))
        recv_exact(s, 5)  # SUBACK
        s.sendall(packet(0xE0, b""))
        s.close()
        t = time.time()
        publish_all(port, n, size)
        took = time.time() - t
        journal = os.path.join(work, "shardmq.journal")
        disk = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(journal) for f in fs
        )
        rss_before = rss_kib(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t = time.time()
        proc = subprocess.Popen(
            ["taskset", "-c", "0", BROKER, "-c", conf, "--shards", "2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(port, 600)
        s, present = connect(port, "rec-sub", False)
        recovered = time.time() - t
        rss_after = rss_kib(proc.pid)
        s.close()
        state = n * size
        print(f"messages queued:        {n:,} x {size} B = {state / 1e9:.2f} GB of payload")
        print(f"publish (QoS 1, acked): {took:.1f} s, {n / took:,.0f} msg/s")
        print(f"journal on disk:        {disk / 1e9:.2f} GB, {disk / n:.0f} B per queued message"
              f" ({(disk / n) - size:.0f} B over the payload)")
        print(f"broker RSS before kill: {rss_before / 1e6:.2f} GB")
        print(f"recovery (kill -9 -> CONNACK, session present {present}): {recovered:.1f} s")
        print(f"broker RSS recovered:   {rss_after / 1e6:.2f} GB")
    finally:
        stop(proc, work)


if __name__ == "__main__":
    main()
