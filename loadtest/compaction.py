#!/usr/bin/env python3
"""The compaction pause at size: queue N QoS 1 messages of SIZE bytes for
one offline persistent session (one shard), so that the shard's journal is
compacted with a large live state, and report from the broker's log what
each compaction cost the shard's loop and what was done off it.

    cargo build --release --bins && python3 loadtest/compaction.py [N] [SIZE]

Defaults: N = 1,000,000 messages of SIZE = 10 bytes (about 1.6 million live
records when the journal first reaches `persistence_compact_size`, 64 MiB).
The broker runs with 1 shard on core 0 (taskset), `persistence_sync
written`. Everything it starts is killed at the end; its directory is
removed.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import recovery  # noqa: E402  (its MQTT helpers)


def main():
    n, size = recovery.arguments("compaction.py", 1_000_000, 10)
    work, port, conf = recovery.workspace("compaction")
    log = os.path.join(work, "broker.log")
    with open(log, "w") as err:
        proc = subprocess.Popen(
            ["taskset", "-c", "0", recovery.BROKER, "-c", conf, "--shards", "1"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        recovery.wait_port(port)
        s, _ = recovery.connect(port, "cmp-sub", False)
        s.sendall(recovery.packet(0x82, b"\x00\x01" + recovery.utf8("rec/#") + bytes([1])))
        recovery.recv_exact(s, 5)  # SUBACK
        s.sendall(recovery.packet(0xE0, b""))
        s.close()
        t = time.time()
        recovery.publish_all(port, n, size)
        print(f"published {n:,} x {size} B QoS 1 in {time.time() - t:.1f} s")
        time.sleep(2)  # the last compaction's thread
        text = open(log).read()
        paused = re.findall(r"compaction to (\d+) records started; the loop paused ([\d.]+)(µs|ms|s)", text)
        off = re.findall(r"shard-\d+\.journal\.compact: compaction snapshot of (\d+) bytes encoded and written in ([\d.]+)(µs|ms|s)", text)
        unit = {"µs": 1e-3, "ms": 1.0, "s": 1e3}
        for (records, p, pu), (nbytes, o, ou) in zip(paused, off):
            on_loop, off_loop = float(p) * unit[pu], float(o) * unit[ou]
            print(f"compaction of {int(records):,} records ({int(nbytes) / 2**20:.0f} MiB): "
                  f"loop paused {on_loop:.2f} ms at most per turn; encoded and written off the loop in "
                  f"{off_loop:.0f} ms (all on the loop before: ~{on_loop + off_loop:.0f} ms)")
        if not paused:
            print("no compaction happened: raise N")
    finally:
        recovery.stop(proc, work)


if __name__ == "__main__":
    main()
