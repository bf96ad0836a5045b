"""A TCP relay that holds every chunk for a fixed time in each direction, so
Redis seems that far away: with it, a decision's round trips to Redis show
in a call's latency, one delay pair each, where loopback would hide them.

    delay_proxy.py --delay-ms 2.5 LISTEN_PORT=TARGET_PORT [...]

Prints "ready" once every port listens. Order within a connection is kept:
each chunk is written after the same delay, in the order it was read."""
import argparse
import asyncio
import sys


async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            loop.call_later(delay, writer.write, chunk)
    except ConnectionError:
        pass
    # The last chunks are still on their way: close after them.
    loop.call_later(delay, writer.close)


async def relay(target, delay, reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer, delay), pipe(up_reader, writer, delay))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=float, required=True, help="each way")
    ap.add_argument("maps", nargs="+", metavar="LISTEN=TARGET")
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0
    servers = []
    for m in args.maps:
        listen, target = (int(x) for x in m.split("="))
        servers.append(await asyncio.start_server(
            lambda r, w, t=target: relay(t, delay, r, w), "127.0.0.1", listen))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
