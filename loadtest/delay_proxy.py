#!/usr/bin/env python3
"""A TCP proxy that holds every byte DELAY_MS milliseconds each way, in
order: a wide-area link's latency between an edge broker's bridge and its
upstream, on loopback (where `tc netem` is not available).

    python3 loadtest/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

Runs until killed. Each connection to 127.0.0.1:LISTEN_PORT is relayed to
127.0.0.1:TARGET_PORT; reads are forwarded as they came, DELAY_MS later.
"""
import asyncio
import sys


async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    pending = asyncio.Queue()

    async def send():
        while True:
            due, data = await pending.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await pending.put((loop.time() + delay, data))
    finally:
        await pending.put((0, None))
        await sender


async def relay(client_reader, client_writer, target, delay):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pipe(client_reader, up_writer, delay),
        pipe(up_reader, client_writer, delay),
        return_exceptions=True,
    )


async def main():
    listen, target, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    server = await asyncio.start_server(
        lambda r, w: relay(r, w, target, delay_ms / 1000.0), "127.0.0.1", listen
    )
    async with server:
        await server.serve_forever()


asyncio.run(main())
