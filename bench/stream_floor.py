"""The floor of a WatchRun fan-out on this machine: a bare grpc.aio server
holding N server streams writes one message to all of them, M times; how
long until every stream got each message, and the server's CPU per message
written. No suite, no storage, no events: what grpc.aio itself costs, for
`bench.gateway --only fanout` to be read against.

The server is a separate process; the N streams are held by one client
process on 4 connections. Each push is a unary call that appends a message
to the server's log and wakes every stream's handler (an async generator,
as the gateway's WatchRun is); the client times from the push until the
last stream got the message, then waits 50 ms before the next push.

    .venv/bin/python -m bench.stream_floor [--streams 1000] [--messages 50] [--bytes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cpu import cpu_seconds  # noqa: E402
from bench.storage_reads import wait_ready  # noqa: E402
from tests.ports import free_port  # noqa: E402

CONNECTIONS = 4


def _serve(port: int, size: int) -> None:
    async def main() -> None:
        log: list[bytes] = []
        changed = [asyncio.Event()]

        async def watch(request: bytes, ctx: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            sent = 0
            while True:
                while sent >= len(log):
                    await changed[0].wait()
                sent += 1
                yield log[sent - 1]

        async def push(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
            log.append(b"e" * size)
            event, changed[0] = changed[0], asyncio.Event()
            event.set()
            return b""

        handlers = {
            "Watch": grpc.unary_stream_rpc_method_handler(watch),
            "Push": grpc.unary_unary_rpc_method_handler(push),
        }
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor.Streams", handlers),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


async def _measure(target: str, server_pid: int, streams: int, messages: int) -> tuple[list[float], float]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(CONNECTIONS)]
    got = [0] * streams

    async def follow(k: int) -> None:
        async for _ in channels[k % CONNECTIONS].unary_stream("/floor.Streams/Watch")(b""):
            got[k] += 1
            if got[k] == messages:
                return

    tasks = [asyncio.create_task(follow(k)) for k in range(streams)]
    await asyncio.sleep(2.0)  # every stream open
    push = channels[0].unary_unary("/floor.Streams/Push")
    reached: list[float] = []
    cpu = cpu_seconds(server_pid)
    for m in range(messages):
        started = time.perf_counter()
        await push(b"")
        while min(got) <= m:
            await asyncio.sleep(0.0005)
        reached.append((time.perf_counter() - started) * 1e3)
        await asyncio.sleep(0.05)
    cpu = cpu_seconds(server_pid) - cpu
    await asyncio.gather(*tasks)
    for channel in channels:
        await channel.close()
    return reached, cpu / (streams * messages) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--bytes", type=int, default=300, help="size of each message")
    args = parser.parse_args()
    port = free_port()
    server = mp.get_context("spawn").Process(target=_serve, args=(port, args.bytes), daemon=True)
    server.start()
    try:
        wait_ready(f"127.0.0.1:{port}", server)
        assert server.pid is not None
        reached, cpu_us = asyncio.run(_measure(f"127.0.0.1:{port}", server.pid, args.streams, args.messages))
    finally:
        server.kill()
    reached.sort()
    p90 = reached[round(0.9 * (len(reached) - 1))]
    print(
        f"bare grpc.aio, {args.streams} streams, {args.messages} messages of {args.bytes} B: every stream reached "
        f"in p50 {statistics.median(reached):.1f} ms, p90 {p90:.1f} ms, max {reached[-1]:.1f} ms; "
        f"server CPU {cpu_us:.1f} us per message written"
    )


if __name__ == "__main__":
    main()
