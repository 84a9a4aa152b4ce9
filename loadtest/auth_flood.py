#!/usr/bin/env python3
"""Bad-password CONNECT flood for loadtest/auth_flood.sh.

Opens connections at a fixed rate (open loop), each sending an MQTT 3.1.1
CONNECT with a user name and a wrong password, reads the CONNACK, closes.
At most --concurrency attempts are open at once. Prints one JSON line:
attempts, CONNACK return codes seen, failures, achieved rate.
"""

import argparse
import asyncio
import json
import struct
import time


def connect_packet(client_id: str, user: str, password: str) -> bytes:
    def s(b: bytes) -> bytes:
        return struct.pack("!H", len(b)) + b

    flags = 0x80 | 0x40 | 0x02  # user name, password, clean session
    body = s(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 60)
    body += s(client_id.encode()) + s(user.encode()) + s(password.encode())
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


async def attempt(port, n, args, codes, failures, slots):
    async with slots:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 5)
            writer.write(connect_packet(f"flood-{n}", args.user, args.password))
            ack = await asyncio.wait_for(reader.readexactly(4), 5)
            codes[ack[3]] = codes.get(ack[3], 0) + 1
            writer.close()
        except Exception:  # refused, reset, timed out: counted, not fatal
            failures[0] += 1


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=500)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="wrong")
    args = p.parse_args()
    codes, failures, tasks = {}, [0], []
    slots = asyncio.Semaphore(args.concurrency)
    start = time.monotonic()
    n = 0
    while True:
        due = start + n / args.rate
        now = time.monotonic()
        if due - start >= args.duration:
            break
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.ensure_future(
            attempt(args.port, n, args, codes, failures, slots)))
        n += 1
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    print(json.dumps({
        "attempts": n,
        "connack_codes": {str(k): v for k, v in sorted(codes.items())},
        "failures": failures[0],
        "rate": round(n / elapsed, 1),
    }))


asyncio.run(main())
