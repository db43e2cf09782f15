"""Fan-out of run events: many concurrent subscribers on one run.

Starts storage and notifier as real processes (SQLite in a temporary folder),
opens N `StreamEvents` subscribers on one run from client processes, and
publishes E events, as fast as the notifier takes them or at a given rate,
in Publish calls of a few events with up to 8 calls in flight (a runner's
workers). Each event is stamped when its Publish call is made. Every
subscriber reads every event; the figures are the delivery latency from
publish to receipt (p50, p99, max), the Publish call latency, events
published per second, deliveries per second, and how many streams were cut
off for falling behind (they resume from the log; their latency counts the
detour). The baseline, measured in the same run, is one subscriber.

    .venv/bin/python bench/notifier_fanout.py [--subscribers 1000] [--events 10000] [--rate 100] [--batch 1]

--rate 0 publishes as fast as the notifier takes the calls (its capacity).
AUTOML_STREAM_MESSAGES_PER_SECOND in the environment is passed to the notifier.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automl.v1 import common_pb2, event_pb2, notifier_service_pb2_grpc  # noqa: E402
from automl.v1 import notifier_service_pb2 as pb  # noqa: E402
from tests import internal  # noqa: E402
from tests.notifier.conftest import start_services, stop_services  # noqa: E402

# notifier settings worth trying from the command line
EXTRA_ENV = {
    k: os.environ[k] for k in ("AUTOML_STREAM_MESSAGES_PER_SECOND", "AUTOML_SUBSCRIBER_QUEUE") if k in os.environ
}
IN_FLIGHT = 8  # concurrent Publish calls at most, as from a runner with 8 workers
STREAMS_PER_CHANNEL = 100  # one HTTP/2 connection per hundred streams, as many browsers would have


@dataclass
class Outcome:
    latencies_ms: np.ndarray  # one per delivery
    resumes: int
    first_receipt: float
    last_receipt: float


async def _subscribe(stub, run: str, events: int, latencies: array.array, resumes: list[int]) -> tuple[float, float]:
    seen = 0
    first = last = 0.0
    request = pb.StreamEventsRequest(run=run)
    while seen < events:
        call = stub.StreamEvents(request)
        try:
            async for message in call:
                if not message.batch.events:
                    continue  # a heartbeat
                now = time.time_ns()
                latencies.extend((now - e.create_time.ToNanoseconds()) / 1e6 for e in message.batch.events)
                last = now / 1e9
                first = first or last
                seen = message.batch.events[-1].sequence
                if seen == events:
                    break
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            resumes.append(1)
            request = pb.StreamEventsRequest(run=run, after_sequence=seen)
        finally:
            call.cancel()
    return first, last


async def _subscribers(target: str, run: str, count: int, events: int, ready) -> Outcome:
    channels = [internal.aio_channel(target) for _ in range(0, count, STREAMS_PER_CHANNEL)]
    # An array of doubles, not a list of millions of floats: the collector's full
    # passes would walk such a list and stall this client, inflating the delays.
    latencies = array.array("d")
    resumes: list[int] = []
    tasks = [
        asyncio.create_task(
            _subscribe(
                notifier_service_pb2_grpc.NotifierStub(channels[i // STREAMS_PER_CHANNEL]),
                run,
                events,
                latencies,
                resumes,
            )
        )
        for i in range(count)
    ]
    for channel in channels:
        await channel.channel_ready()
    await asyncio.sleep(1.0 + count / 500)  # every stream registered on the server
    ready.set()
    spans = await asyncio.gather(*tasks)
    for channel in channels:
        await channel.close()
    return Outcome(
        np.asarray(latencies, dtype=np.float32),
        len(resumes),
        min(s[0] for s in spans),
        max(s[1] for s in spans),
    )


def _worker(target: str, run: str, count: int, events: int, ready, out) -> None:
    out.put(asyncio.run(_subscribers(target, run, count, events, ready)))


async def _publish(target: str, run: event_pb2.Event, events: int, rate: float, batch: int) -> tuple[float, np.ndarray]:
    """Publish on schedule without waiting for earlier calls to return (as a
    runner with several candidates finishing at once does); returns the seconds taken and
    each call's latency in ms."""
    async with internal.aio_channel(target, "runner") as channel:
        stub = notifier_service_pb2_grpc.NotifierStub(channel)
        calls: list[float] = []
        in_flight = asyncio.Semaphore(IN_FLIGHT)

        async def one(first: int) -> None:
            async with in_flight:
                now = time.time_ns()
                items = []
                for _ in range(first, min(first + batch, events)):
                    event = event_pb2.Event()
                    event.CopyFrom(run)
                    event.create_time.FromNanoseconds(now)
                    items.append(event)
                await stub.Publish(pb.PublishRequest(events=items), timeout=300)
                calls.append((time.time_ns() - now) / 1e6)

        began = time.monotonic()
        tasks = []
        for first in range(0, events, batch):
            if rate:
                await asyncio.sleep(max(0.0, began + first / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(first)))
        failures = [r for r in await asyncio.gather(*tasks, return_exceptions=True) if isinstance(r, BaseException)]
        if failures:
            raise SystemExit(f"{len(failures)} Publish calls failed; first: {failures[0]!r}")
        return time.monotonic() - began, np.asarray(calls)


def scenario(services, subscribers: int, events: int, rate: float, batch: int, procs: int) -> dict[str, float]:
    run = services.new_run()
    template = event_pb2.Event(
        run=run.name,
        experiment=run.experiment,
        stop_requested=event_pb2.StopRequested(reason=common_pb2.STOP_REASON_USER, message="benchmark"),
    )
    ctx = mp.get_context("spawn")
    procs = min(procs, subscribers)
    out = ctx.Queue()
    readies = []
    workers = []
    for k in range(procs):
        ready = ctx.Event()
        share = subscribers // procs + (k < subscribers % procs)
        worker = ctx.Process(
            target=_worker, args=(services.notifier_target, run.name, share, events, ready, out), daemon=True
        )
        worker.start()
        readies.append(ready)
        workers.append(worker)
    for ready in readies:
        if not ready.wait(120):
            raise SystemExit("subscribers did not connect within 120 s")
    publish_start = time.time()
    publish_seconds, calls = asyncio.run(_publish(services.notifier_target, template, events, rate, batch))
    outcomes = [out.get(timeout=1800) for _ in workers]
    for worker in workers:
        worker.join(30)
    latencies = np.concatenate([o.latencies_ms for o in outcomes])
    last = max(o.last_receipt for o in outcomes)
    deliveries = subscribers * events
    assert len(latencies) == deliveries, f"{len(latencies)} deliveries, expected {deliveries}"
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "max_ms": float(latencies.max()),
        "published_per_s": events / publish_seconds,
        "publish_p99_ms": float(np.percentile(calls, 99)),
        "deliveries_per_s": deliveries / (last - publish_start),
        "resumes": sum(o.resumes for o in outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="events published per second; 0: as fast as possible")
    parser.add_argument("--batch", type=int, default=1, help="events per Publish call")
    parser.add_argument("--procs", type=int, default=2, help="client processes holding the subscribers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        services = start_services(Path(tmp), {"AUTOML_LOG_LEVEL": "warning", **EXTRA_ENV})
        try:
            rows = [
                ("baseline: 1 subscriber", scenario(services, 1, args.events, args.rate, args.batch, 1)),
                (
                    f"{args.subscribers} subscribers",
                    scenario(services, args.subscribers, args.events, args.rate, args.batch, args.procs),
                ),
            ]
        finally:
            stop_services(services)
    pace = f"at {args.rate:g}/s" if args.rate else "as fast as possible"
    print(f"\n{args.events} events published {pace} in Publish calls of {args.batch} ({IN_FLIGHT} at once), one run")
    print(
        f"{'':<24}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'published/s':>13}{'Publish p99 ms':>16}"
        f"{'deliveries/s':>14}{'resumes':>9}"
    )
    for label, r in rows:
        print(
            f"{label:<24}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}{r['published_per_s']:>13.0f}"
            f"{r['publish_p99_ms']:>16.1f}{r['deliveries_per_s']:>14.0f}{r['resumes']:>9}"
        )
    base, many = rows[0][1], rows[1][1]
    print(
        f"ratio {args.subscribers} vs 1: p99 x{many['p99_ms'] / base['p99_ms']:.1f}, "
        f"deliveries/s x{many['deliveries_per_s'] / base['deliveries_per_s']:.0f}; goal p99 < 100 ms"
    )


if __name__ == "__main__":
    main()
