"""The public gateway's cost (issue 7): unary calls, WatchRun fan-out and
uploads through the gateway against the service behind it, in one run.

Starts storage, notifier, runner and gateway as real processes (SQLite and
blobs in a temporary folder, API keys on, production defaults for the key
cache and the supervisor) and measures:

1. unary  GetRun of one ended run (iris, max_models 2) through the gateway
          (key check, validation, forwarded to storage) from C concurrent
          callers for S seconds: requests/s, p50, p99. Baseline: the same
          client harness against a bare grpc.aio server in its own process
          that answers the same method with the same Run's bytes (no
          interceptors, no storage). Goal: gateway/echo >= 0.5, and the
          1,000 requests/s of the original design. Also shown, for the
          diagnosis: GetRun straight to storage, and through a second gateway
          process whose storage is the echo server (answering GetRun and
          LookupApiKey): the gateway's own ceiling; and through a bare
          grpc.aio proxy (bytes forwarded, nothing else) to the echo server:
          the ceiling of any Python gateway. Each figure pools
          --unary-rounds windows, the order reversed every other round.
          The callers are coroutines of one client process (grpc.aio, C
          loops over a few channels, each its own connection); --client-procs
          spreads them over several processes. CPU seconds per request of
          every process involved are measured over the same window.
2. fanout W watchers of one live run (breast cancer, 3 folds, a time budget
          of B seconds, 2 workers), all open before the run starts (run created
          PENDING in storage, started with the runner's ExecuteRun once every
          watcher is in): through the gateway's WatchRun, and the baseline,
          the notifier's own StreamEvents (after_sequence 0, end_with_run:
          what the gateway asks the notifier for), on a second run of the same
          kind, one after the other, so that neither side's processes take
          CPU from the other on this 2-core machine. Per delivered event:
          delay = receipt - event.create_time (stamped by the runner, same
          clock); p50, p99 over every watcher and event; events per watcher;
          every watcher must get events 1..last_sequence, no gap, no repeat.
          Each round is one run per side (notifier, gateway; the next round
          gateway, notifier); each side's deliveries are pooled over --rounds
          (4: a p99 over some 120 events is not one bad moment). --per-event
          prints each event's first, median and last receipt and its payload.
3. upload UploadDataset of a generated CSV of M MB (bench/csvgen.py) in 1 MiB
          chunks through the gateway and straight to storage, R times each,
          interleaved, one value of the first row changed per upload so that
          storage stores each (it deduplicates identical bytes); median MB/s.
          Goal: gateway/storage >= 0.8.

    .venv/bin/python -m bench.gateway [--quick] [--only unary fanout upload]

AUTOML_LOG_LEVEL, AUTOML_API_KEY_CACHE_SECONDS, AUTOML_STREAM_MESSAGES_PER_SECOND,
AUTOML_SUBSCRIBER_QUEUE and AUTOML_GATEWAY_RUNNING_TTL_SECONDS (0: a running
run's reads all go to storage) in the environment are passed to the services.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from automl.v1 import (  # noqa: E402
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    event_pb2,
    notifier_service_pb2,
    notifier_service_pb2_grpc,
    run_pb2,
    runner_service_pb2,
    runner_service_pb2_grpc,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from bench.cpu import CpuWindow  # noqa: E402
from tests import internal  # noqa: E402

TENANT = "alpha"
CHUNK = 1 << 20
STREAMS_PER_CHANNEL = 100  # watchers per HTTP/2 connection, as in bench/notifier_fanout.py
# Production defaults where tests/gateway shortens them for speed: one key
# lookup per 5 s, one supervisor round per second, a PENDING run (the fan-out
# runs wait for their watchers) not failed as lost while the watchers connect.
SUITE_ENV = {
    "AUTOML_API_KEY_CACHE_SECONDS": "5",
    "AUTOML_SUPERVISOR_INTERVAL_SECONDS": "1",
    "AUTOML_RUNNER_HEARTBEAT_SECONDS": "5",
    "AUTOML_RUNNER_LOST_SECONDS": "300",
}
# settings worth trying from the command line, passed to every service
PASSED_ENV = (
    "AUTOML_LOG_LEVEL",
    "AUTOML_API_KEY_CACHE_SECONDS",
    "AUTOML_STREAM_MESSAGES_PER_SECOND",
    "AUTOML_SUBSCRIBER_QUEUE",
    "AUTOML_GATEWAY_RUNNING_TTL_SECONDS",
    "AUTOML_GC_THRESHOLD",
    "AUTOML_RUNNER_WORKER_NICE",
)
LOCAL = [("grpc.use_local_subchannel_pool", 1)]  # each channel its own connection


def tenant_md() -> list[tuple[str, str]]:
    return [("x-automl-tenant", TENANT)]


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


# ---------------------------------------------------------------- 1. unary


def _echo_server(port: int, answers: dict[str, bytes]) -> None:
    """A bare grpc.aio server answering each unary method of `answers` ("/service/Method")
    with its fixed bytes: no interceptors, no (de)serializing."""

    def answering(answer: bytes):
        async def echo(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
            return answer

        return grpc.unary_unary_rpc_method_handler(echo)

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for method, answer in answers.items():
            service, name = method.strip("/").split("/")
            services.setdefault(service, {})[name] = answering(answer)
        server.add_generic_rpc_handlers(
            tuple(grpc.method_handlers_generic_handler(service, handlers) for service, handlers in services.items())
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


def _bare_proxy(port: int, upstream: str) -> None:
    """A grpc.aio server forwarding AutoML/GetRun's bytes to Storage/GetRun at `upstream`:
    the least any Python gateway does (no interceptors, no key check, no parsing)."""

    async def serve() -> None:
        channel = internal.aio_channel(upstream)
        forward = channel.unary_unary("/automl.v1.Storage/GetRun")

        async def get_run(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
            return await forward(request, timeout=30)

        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handlers = {"GetRun": grpc.unary_unary_rpc_method_handler(get_run)}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("automl.v1.AutoML", handlers),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


async def _hammer(
    target: str,
    method: str | list[tuple[str, bytes]],
    request: run_pb2.GetRunRequest | None,
    metadata: list[tuple[str, str]],
    concurrency: int,
    channels: int,
    warmup: float,
    seconds: float,
    ready,
    go,
    go_at,
) -> np.ndarray:
    """`concurrency` loops of unary calls; `method` one method (with `request`) or a
    list of (method, request bytes) each loop goes round (a mixed load; answers left
    as bytes)."""
    internal_call = isinstance(method, str) and method.startswith("/automl.v1.Storage/")
    chans = [  # storage answers the suite's own services only: a suite credential
        internal.aio_channel(target, options=LOCAL)
        if internal_call
        else grpc.aio.insecure_channel(target, options=LOCAL)
        for _ in range(channels)
    ]
    if isinstance(method, str):
        mix = [(method, request.SerializeToString())]
        parse = run_pb2.Run.FromString
    else:
        mix, parse = method, None
    calls = [
        [(ch.unary_unary(m, request_serializer=None, response_deserializer=parse), body) for m, body in mix]
        for ch in chans
    ]
    for per_channel in calls:  # connected and answering
        for call, body in per_channel:
            await call(body, metadata=metadata, timeout=30)
    ready.set()
    while not go.is_set():
        await asyncio.sleep(0.01)
    begin = go_at.value + warmup
    end = begin + seconds
    latencies: list[float] = []

    async def loop(i: int) -> None:
        per_channel = calls[i % channels]
        k = i
        while (sent := time.monotonic()) < end:
            call, body = per_channel[k % len(per_channel)]
            k += 1
            await call(body, metadata=metadata, timeout=30)
            done = time.monotonic()
            if begin <= done < end:
                latencies.append(done - sent)

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    for ch in chans:
        await ch.close()
    return np.asarray(latencies)


def _hammer_worker(args: tuple, ready, go, go_at, out) -> None:
    try:
        out.put(asyncio.run(_hammer(*args, ready, go, go_at)))
    except BaseException as exc:
        out.put(f"client failed: {exc!r}")
        raise


def _got(out, timeout: float) -> object:
    value = out.get(timeout=timeout)
    if isinstance(value, str):
        raise SystemExit(value)
    return value


@dataclass
class Target:
    label: str
    address: str
    method: str
    metadata: list[tuple[str, str]]
    pids: dict[str, int]  # server processes whose CPU is counted


@dataclass
class Unary:
    latencies: list[np.ndarray] = field(default_factory=list)  # seconds, one per call ended in a window
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process over the windows
    busy: float = 0.0  # machine CPU seconds over the windows
    other: float = 0.0  # of which not by the processes measured (the shared machine's other load)

    @property
    def count(self) -> int:
        return sum(len(a) for a in self.latencies)

    @property
    def requests_per_s(self) -> float:
        return self.count / self.seconds

    def ms(self, q: float) -> float:
        return float(np.percentile(np.concatenate(self.latencies), q)) * 1e3

    def cpu_ms(self) -> dict[str, float]:
        return {k: v / self.count * 1e3 for k, v in self.cpu.items()}


def client_window(label: str, worker, works: list[tuple], pids: dict[str, int], seconds: float, into: Unary) -> None:
    """One window of `seconds` (after 1 s of warm-up) of client processes, one per
    work tuple, each running `worker(work, ready, go, go_at, out)`; their
    latencies and the CPU of `pids` and of the clients go into `into`."""
    ctx = mp.get_context("spawn")
    go, go_at, out = ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    procs, readies = [], []
    for work in works:
        ready = ctx.Event()
        proc = ctx.Process(target=worker, args=(work, ready, go, go_at, out), daemon=True)
        proc.start()
        procs.append(proc)
        readies.append(ready)
    try:
        for ready in readies:
            if not ready.wait(60):
                raise SystemExit(f"{label}: client did not connect within 60 s")
        window = CpuWindow(pids | {f"client{k}": p.pid for k, p in enumerate(procs)})
        go_at.value = time.monotonic()
        go.set()
        time.sleep(max(0.0, go_at.value + 1.0 - time.monotonic()))
        window.start()
        time.sleep(max(0.0, go_at.value + 1.0 + seconds - time.monotonic()))
        window.stop()
        into.latencies += [_got(out, 120) for _ in procs]
        for proc in procs:
            proc.join(30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    into.seconds += seconds
    into.busy += window.machine_cores * seconds
    into.other += window.machine_cores * seconds - sum(window.used.values())
    for name, used in window.used.items():
        key = "client" if name.startswith("client") else name
        into.cpu[key] = into.cpu.get(key, 0.0) + used


def shares(total: int, parts: int) -> list[int]:
    """`total` split as evenly as possible into `parts`."""
    return [total // parts + (k < total % parts) for k in range(parts)]


def unary(target: Target, request: run_pb2.GetRunRequest, args: argparse.Namespace, into: Unary) -> None:
    """One window of `args.seconds` (after 1 s of warm-up) of `args.clients` callers on `target`."""
    n = args.client_procs
    chans = max(1, args.channels // n)
    works = [
        (target.address, target.method, request, target.metadata, share, chans, 1.0, args.seconds)
        for share in shares(args.clients, n)
    ]
    client_window(target.label, _hammer_worker, works, target.pids, args.seconds, into)


def unary_section(suite, client, args: argparse.Namespace, folder: Path) -> list[str]:
    """Figure 1; returns the summary lines."""
    from tests.conftest import spawn, wait_serving
    from tests.ports import free_port
    from tests.runner.conftest import sklearn_csv

    experiment = client.experiment(sklearn_csv("iris"), "target", cv_folds=3)
    run = client.wait_end(client.start(experiment, max_models=2))
    request = run_pb2.GetRunRequest(name=run.name)
    answer = run.SerializeToString()
    port = free_port()
    # The baseline, and the stand-in for storage behind a second gateway (key lookups and GetRun at no cost).
    answers = {
        "/automl.v1.AutoML/GetRun": answer,
        "/automl.v1.Storage/GetRun": answer,
        "/automl.v1.Storage/LookupApiKey": storage_service_pb2.ApiKey(tenant=TENANT).SerializeToString(),
    }
    echo = mp.get_context("spawn").Process(target=_echo_server, args=(port, answers), daemon=True)
    echo.start()
    bare_gateway = proxy = None
    try:
        echo_address = f"127.0.0.1:{port}"
        with grpc.insecure_channel(echo_address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        env = suite.env | {
            "AUTOML_GATEWAY_PORT": str(free_port()),
            "AUTOML_HTTP_PORT": str(free_port()),
            "AUTOML_STORAGE_TARGET": echo_address,
        }
        bare_gateway = spawn("gateway", env, folder / "gateway-on-echo.log")
        bare_address = f"127.0.0.1:{env['AUTOML_GATEWAY_PORT']}"
        wait_serving(bare_address, "automl.v1.AutoML", bare_gateway, timeout=60, log=folder / "gateway-on-echo.log")
        proxy_address = f"127.0.0.1:{free_port()}"
        proxy = mp.get_context("spawn").Process(
            target=_bare_proxy, args=(int(proxy_address.rsplit(":", 1)[1]), echo_address), daemon=True
        )
        proxy.start()
        with grpc.insecure_channel(proxy_address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        pids = {name: proc.pid for name, proc in suite.stack.procs.items()}
        key = bearer(suite.keys[TENANT])
        targets = [
            Target("echo (baseline)", echo_address, "/automl.v1.AutoML/GetRun", [], {"echo": echo.pid}),
            Target(
                "gateway -> storage",
                suite.target,
                "/automl.v1.AutoML/GetRun",
                key,
                {"gateway": pids["gateway"], "storage": pids["storage"]},
            ),
            Target(
                "storage alone",
                suite.stack.target("storage"),
                "/automl.v1.Storage/GetRun",
                tenant_md(),
                {"storage": pids["storage"]},
            ),
            Target(
                "gateway -> echo",
                bare_address,
                "/automl.v1.AutoML/GetRun",
                key,
                {"gateway": bare_gateway.pid, "echo": echo.pid},
            ),
            Target(
                "bare proxy -> echo",
                proxy_address,
                "/automl.v1.AutoML/GetRun",
                [],
                {"proxy": proxy.pid, "echo": echo.pid},
            ),
        ]
        print(
            f"\n1. GetRun of {run.name} ({len(answer)} bytes), {args.clients} concurrent callers on "
            f"{args.channels} connections in {args.client_procs} client process(es), "
            f"{args.unary_rounds} x {args.seconds:g} s each, interleaved",
            flush=True,
        )
        results = {t.label: Unary() for t in targets}
        for r in range(args.unary_rounds):
            for t in targets if r % 2 == 0 else targets[::-1]:
                unary(t, request, args, results[t.label])
    finally:
        if bare_gateway is not None:
            bare_gateway.terminate()
            bare_gateway.wait(30)
        if proxy is not None:
            proxy.kill()
            proxy.join(10)
        echo.kill()
        echo.join(10)
    print(f"{'':<22}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'busy cores':>11}{'other':>7}   CPU ms per request")
    for label, r in results.items():
        cpu = ", ".join(f"{k} {v:.3f}" for k, v in r.cpu_ms().items())
        print(
            f"{label:<22}{r.requests_per_s:>8.0f}{r.ms(50):>8.1f}{r.ms(99):>8.1f}{r.busy / r.seconds:>11.2f}"
            f"{max(0.0, r.other) / r.seconds:>7.2f}   {cpu}"
        )
    echo_r, gateway_r = results["echo (baseline)"], results["gateway -> storage"]
    lines = [
        ratio_line("GetRun gateway/echo requests/s", gateway_r.requests_per_s / echo_r.requests_per_s, 0.5),
        f"GetRun through the gateway: {gateway_r.requests_per_s:,.0f} requests/s (p50 {gateway_r.ms(50):.1f} ms, "
        f"p99 {gateway_r.ms(99):.1f} ms) against the 1,000 requests/s of the original design "
        f"({gateway_r.requests_per_s / 1000:.2f}x)",
        f"diagnosis: gateway/storage alone {gateway_r.requests_per_s / results['storage alone'].requests_per_s:.2f}; "
        f"gateway over the echo stand-in/echo {results['gateway -> echo'].requests_per_s / echo_r.requests_per_s:.2f}; "
        f"bare proxy/echo {results['bare proxy -> echo'].requests_per_s / echo_r.requests_per_s:.2f}",
    ]
    print("\n".join(lines), flush=True)
    return lines


# ---------------------------------------------------------------- 4. reads


class _LeanHttp:
    """HTTP/1.1 keep-alive GETs of a few paths in turn, one at a time: asyncio
    streams, each request's bytes built once, the answer read by its
    Content-Length and parsed (bench/http_json.py's lean client, several paths)."""

    def __init__(self, base: str, paths: list[str], key: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.requests = [
            (
                f"GET {path} HTTP/1.1\r\nhost: {parts.netloc}\r\nauthorization: Bearer {key}\r\n"
                "accept: application/json\r\n\r\n"
            ).encode()
            for path in paths
        ]
        self.k = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self) -> bytes:
        self.writer.write(self.requests[self.k % len(self.requests)])
        self.k += 1
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
        body = await self.reader.readexactly(length)
        if head[9:12] != b"200":
            raise RuntimeError(f"{head[:200]!r} {body[:200]!r}")
        return body


async def _http_mix(
    base: str, paths: list[str], key: str, concurrency: int, warmup: float, seconds: float, ready, go, go_at
) -> np.ndarray:
    import json

    conns = [_LeanHttp(base, paths, key) for _ in range(concurrency)]
    for i, c in enumerate(conns):
        c.k = i
    await asyncio.gather(*(c.open() for c in conns))
    for c in conns:
        for _ in paths:
            json.loads(await c.get())
    ready.set()
    while not go.is_set():
        await asyncio.sleep(0.01)
    begin = go_at.value + warmup
    end = begin + seconds
    latencies: list[float] = []

    async def loop(c: _LeanHttp) -> None:
        while (sent := time.monotonic()) < end:
            json.loads(await c.get())
            done = time.monotonic()
            if begin <= done < end:
                latencies.append(done - sent)

    await asyncio.gather(*(loop(c) for c in conns))
    for c in conns:
        c.writer.close()
    return np.asarray(latencies)


def _http_mix_worker(args: tuple, ready, go, go_at, out) -> None:
    try:
        out.put(asyncio.run(_http_mix(*args, ready, go, go_at)))
    except BaseException as exc:
        out.put(f"HTTP client failed: {exc!r}")
        raise


def synthetic_run(suite, experiment: str, results: int, end: bool) -> run_pb2.Run:
    """A run with `results` model results written straight to storage (as a
    runner would), ended SUCCEEDED or left RUNNING."""
    from tests.gateway.test_dashboard import _result

    storage = storage_service_pb2_grpc.StorageStub(internal.channel(suite.stack.target("storage")))
    md = tenant_md()
    run = storage.CreateRun(
        storage_service_pb2.CreateRunRequest(
            run=run_pb2.Run(
                experiment=experiment,
                # One more than it gets: the gateway's supervisor must not stop it while it is written.
                stop_conditions=common_pb2.StopConditions(max_models=results + 1),
                primary_metric=common_pb2.METRIC_ACCURACY,
            )
        ),
        metadata=md,
        timeout=30,
    )
    run = storage.UpdateRunState(
        storage_service_pb2.UpdateRunStateRequest(
            name=run.name,
            expected_states=[common_pb2.RUN_STATE_PENDING],
            state=common_pb2.RUN_STATE_RUNNING,
            runner_id="bench",
        ),
        metadata=md,
        timeout=30,
    )
    rng = np.random.default_rng(0)
    families = ["random_forest", "logistic_regression", "gradient_boosting", "extra_trees"]
    for start in range(1, results + 1, 1000):
        batch = [_result(i, families[i % len(families)], rng) for i in range(start, min(results, start + 999) + 1)]
        storage.BatchCreateModelResults(
            storage_service_pb2.BatchCreateModelResultsRequest(run=run.name, model_results=batch),
            metadata=md,
            timeout=120,
        )
    if end:
        run = storage.UpdateRunState(
            storage_service_pb2.UpdateRunStateRequest(
                name=run.name,
                expected_states=[common_pb2.RUN_STATE_RUNNING],
                state=common_pb2.RUN_STATE_SUCCEEDED,
                stop_reason=common_pb2.STOP_REASON_MAX_MODELS,
            ),
            metadata=md,
            timeout=30,
        )
    return run


def reads_section(suite, client, args: argparse.Namespace) -> list[str]:
    """Figure 4: GetRun, GetLeaderboard page 1 and a mixed read load (GetRun,
    ListRuns, GetLeaderboard in turn) through the gateway over gRPC and over
    HTTP, of an ended run and of a running one, each with args.results results."""
    from tests.runner.conftest import sklearn_csv

    experiment = client.experiment(sklearn_csv("iris"), "target", cv_folds=3)
    runs = {
        "ended": synthetic_run(suite, experiment.name, args.results, True),
        "running": synthetic_run(suite, experiment.name, args.results, False),
    }
    key = suite.keys[TENANT]
    pids = {n: suite.stack.procs[n].pid for n in ("gateway", "storage")}
    page = args.page_size
    loads: dict[str, tuple[list[tuple[str, bytes]], list[str]]] = {}
    for state, run in runs.items():
        rid = run.name
        get = ("/automl.v1.AutoML/GetRun", run_pb2.GetRunRequest(name=rid).SerializeToString())
        board = (
            "/automl.v1.AutoML/GetLeaderboard",
            run_pb2.GetLeaderboardRequest(run=rid, page_size=page).SerializeToString(),
        )
        runs_page = ("/automl.v1.AutoML/ListRuns", run_pb2.ListRunsRequest(page_size=20).SerializeToString())
        loads[f"GetRun {state}"] = ([get], [f"/v1/{rid}"])
        loads[f"GetLeaderboard p1 {state}"] = ([board], [f"/v1/{rid}/leaderboard?pageSize={page}"])
        loads[f"mixed {state}"] = (
            [get, runs_page, board],
            [f"/v1/{rid}", "/v1/runs?pageSize=20", f"/v1/{rid}/leaderboard?pageSize={page}"],
        )
    only = [name for name in loads if not args.reads or any(r in name for r in args.reads)]
    print(
        f"\n4. reads through the gateway, {args.clients} concurrent callers ({args.channels} gRPC connections; "
        f"HTTP/1.1 keep-alive, one connection per caller), runs of {args.results:,} results, leaderboard page "
        f"size {page}, {args.unary_rounds} x {args.seconds:g} s each, gRPC and HTTP interleaved",
        flush=True,
    )
    results: dict[tuple[str, str], Unary] = {}
    for r in range(args.unary_rounds):
        for name in only:
            mix, paths = loads[name]
            doors = ("grpc", "http") if r % 2 == 0 else ("http", "grpc")
            for door in doors:
                into = results.setdefault((name, door), Unary())
                if door == "grpc":
                    works = [
                        (suite.target, mix, None, bearer(key), share, max(1, args.channels // args.client_procs),
                         1.0, args.seconds)
                        for share in shares(args.clients, args.client_procs)
                    ]  # fmt: skip
                    client_window(name, _hammer_worker, works, pids, args.seconds, into)
                else:
                    works = [
                        (suite.http, paths, key, share, 1.0, args.seconds)
                        for share in shares(args.clients, args.client_procs)
                    ]
                    client_window(name, _http_mix_worker, works, pids, args.seconds, into)
    print(f"{'':<26}{'door':<6}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'other':>7}   CPU ms per request")
    for (name, door), r in results.items():
        cpu = ", ".join(f"{k} {v:.3f}" for k, v in r.cpu_ms().items())
        print(
            f"{name:<26}{door:<6}{r.requests_per_s:>8.0f}{r.ms(50):>8.1f}{r.ms(99):>8.1f}"
            f"{max(0.0, r.other) / r.seconds:>7.2f}   {cpu}"
        )
    lines = []
    for name in only:
        g, h = results[(name, "grpc")], results[(name, "http")]
        lines.append(
            f"{name}: gRPC {g.requests_per_s:,.0f} req/s (p99 {g.ms(99):.1f} ms, gateway "
            f"{g.cpu_ms().get('gateway', 0):.3f} ms CPU), HTTP {h.requests_per_s:,.0f} req/s (p99 "
            f"{h.ms(99):.1f} ms); HTTP/gRPC {h.requests_per_s / g.requests_per_s:.2f} (goal >= 0.9)"
        )
    print("\n".join(lines), flush=True)
    return lines


# -------------------------------------------------------------- 2. fan-out


@dataclass
class Watched:
    sequences: list[list[int]]  # per watcher, the sequence of each event received
    delays_ms: list[list[float]]  # per watcher, receipt - create_time of each event received
    kinds: dict[int, str] = field(default_factory=dict)  # sequence -> payload, as the first watcher got it


async def _watchers(kind: str, target: str, run: str, key: str, count: int, ready, timeout: float) -> Watched:
    def channel_to(target: str) -> grpc.aio.Channel:  # the notifier is internal: it needs a suite credential
        return (
            grpc.aio.insecure_channel(target, options=LOCAL)
            if kind == "gateway"
            else internal.aio_channel(target, options=LOCAL)
        )

    channels = [channel_to(target) for _ in range(0, count, STREAMS_PER_CHANNEL)]
    sequences: list[list[int]] = [[] for _ in range(count)]
    delays: list[list[float]] = [[] for _ in range(count)]
    kinds: dict[int, str] = {}
    opened = asyncio.Semaphore(0)

    def open_stream(i: int):
        channel = channels[i // STREAMS_PER_CHANNEL]
        if kind == "gateway":
            stub = automl_service_pb2_grpc.AutoMLStub(channel)
            return stub.WatchRun(event_pb2.WatchRunRequest(name=run), metadata=bearer(key), timeout=timeout)
        stub = notifier_service_pb2_grpc.NotifierStub(channel)
        request = notifier_service_pb2.StreamEventsRequest(run=run, after_sequence=0, end_with_run=True)
        return stub.StreamEvents(request, metadata=tenant_md(), timeout=timeout)

    async def watch(i: int) -> None:
        seen, delay = sequences[i], delays[i]
        call = open_stream(i)
        if kind != "gateway":
            opened.release()  # nothing comes before the first event
        async for message in call:
            content = message.WhichOneof("content")
            if content == "snapshot":
                opened.release()
            elif content == "batch":
                now = time.time_ns()
                for event in message.batch.events:
                    delay.append((now - event.create_time.ToNanoseconds()) / 1e6)
                    seen.append(event.sequence)
                    if i == 0:
                        kinds[event.sequence] = str(event.WhichOneof("payload"))

    tasks = [asyncio.create_task(watch(i)) for i in range(count)]
    for channel in channels:
        await channel.channel_ready()
    for _ in range(count):
        await opened.acquire()
    await asyncio.sleep(1.0 + count / 500)  # every stream subscribed behind the gateway too
    ready.set()
    await asyncio.gather(*tasks)
    for channel in channels:
        await channel.close()
    return Watched(sequences, delays, kinds)


def _watch_worker(kind: str, target: str, run: str, key: str, count: int, ready, timeout: float, out) -> None:
    try:
        out.put(asyncio.run(_watchers(kind, target, run, key, count, ready, timeout)))
    except BaseException as exc:
        out.put(f"{kind} watchers failed: {exc!r}")
        raise


@dataclass
class Fanout:
    delays_ms: list[np.ndarray] = field(default_factory=list)
    spreads_ms: list[float] = field(default_factory=list)  # per event: last receipt - first receipt over watchers
    events: list[int] = field(default_factory=list)  # last_sequence of each run
    watchers_complete: int = 0
    watchers: int = 0
    models: list[int] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process, ExecuteRun to the last event
    seconds: float = 0.0  # ExecuteRun to the last event

    def add(self, other: Fanout) -> None:
        self.delays_ms += other.delays_ms
        self.spreads_ms += other.spreads_ms
        self.events += other.events
        self.watchers_complete += other.watchers_complete
        self.watchers += other.watchers
        self.models += other.models
        self.seconds += other.seconds
        for name, used in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + used

    def p(self, q: float) -> float:
        return float(np.percentile(np.concatenate(self.delays_ms), q))


def fanout(
    kind: str, suite, experiment: str, args: argparse.Namespace, target: str = "", worker=None, label: str = ""
) -> Fanout:
    """One run watched by args.watchers watchers, opened before it starts.
    `worker(kind, target, run, key, count, ready, timeout, out)` runs `count`
    watchers in a process (default: gRPC WatchRun on the gateway, or
    StreamEvents on the notifier, by `kind`)."""
    from tests.runner.conftest import seconds

    label = label or kind
    worker = worker or _watch_worker
    target = target or (suite.target if kind == "gateway" else suite.stack.target("notifier"))

    storage = storage_service_pb2_grpc.StorageStub(internal.channel(suite.stack.target("storage")))
    runner = runner_service_pb2_grpc.RunnerStub(internal.channel(suite.stack.target("runner")))
    run = storage.CreateRun(
        storage_service_pb2.CreateRunRequest(
            run=run_pb2.Run(
                experiment=experiment,
                stop_conditions=common_pb2.StopConditions(max_duration=seconds(args.budget)),
                parallel_workers=2,
            )
        ),
        metadata=tenant_md(),
        timeout=30,
    )
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs, readies = [], []
    for share in shares(args.watchers, min(args.watch_procs, args.watchers)):
        ready = ctx.Event()
        proc = ctx.Process(
            target=worker,
            args=(kind, target, run.name, suite.keys[TENANT], share, ready, args.budget + 600, out),
            daemon=True,
        )
        proc.start()
        procs.append(proc)
        readies.append(ready)
    try:
        for ready in readies:
            while not ready.wait(1):
                if not out.empty():  # a worker failed while connecting
                    _got(out, 1)
                if not any(p.is_alive() for p in procs):
                    raise SystemExit(f"{label}: watcher processes ended before the run started")
        names = ("gateway", "notifier", "runner")
        window = CpuWindow(
            {n: suite.stack.procs[n].pid for n in names} | {f"client{k}": p.pid for k, p in enumerate(procs)}
        )
        window.start()
        runner.ExecuteRun(runner_service_pb2.ExecuteRunRequest(name=run.name), metadata=tenant_md(), timeout=60)
        outcomes: list[Watched] = [_got(out, args.budget + 600) for _ in procs]
        window.stop()
        for proc in procs:
            proc.join(30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    end = storage.GetRun(run_pb2.GetRunRequest(name=run.name), metadata=tenant_md(), timeout=30)
    expected = list(range(1, end.last_sequence + 1))
    every = [s for o in outcomes for s in o.sequences]
    complete = sum(s == expected for s in every)
    by_event: dict[int, list[float]] = {}
    for o in outcomes:
        for seen, delay in zip(o.sequences, o.delays_ms, strict=True):
            for sequence, ms in zip(seen, delay, strict=True):
                by_event.setdefault(sequence, []).append(ms)
    state = common_pb2.RunState.Name(end.state)
    if getattr(args, "per_event", False):
        kinds = {k: v for o in outcomes for k, v in o.kinds.items()}
        print(f"  {label} per event: sequence first/median/last receipt ms after create_time, payload")
        for sequence, ms in sorted(by_event.items()):
            receipts = f"{min(ms):8.1f} {statistics.median(ms):8.1f} {max(ms):8.1f}"
            print(f"    {sequence:>4} {receipts}  {kinds.get(sequence, '')}")
    print(
        f"  {label:<8} {run.name}: {state} ({common_pb2.StopReason.Name(end.stop_reason)}), "
        f"{end.models_evaluated} models, {end.last_sequence} events in {window.seconds:.1f} s; "
        f"{complete}/{len(every)} watchers got events 1..{end.last_sequence} exactly once in order",
        flush=True,
    )
    return Fanout(
        [np.asarray([ms for o in outcomes for delay in o.delays_ms for ms in delay])],
        [max(v) - min(v) for v in by_event.values()],
        [end.last_sequence],
        complete,
        len(every),
        [end.models_evaluated],
        {n: sum(v for k, v in window.used.items() if k.rstrip("0123456789") == n) for n in (*names, "client")},
        window.seconds,
    )


def watch_rounds(
    client, args: argparse.Namespace, order: tuple[str, str], measure: Callable[[str, str], Fanout], title: str = ""
) -> dict[str, Fanout]:
    """Figure 2's runs: args.rounds runs per side (`measure(side, experiment)`),
    the side that goes first alternating from round to round."""
    from tests.runner.conftest import sklearn_csv

    experiment = client.experiment(sklearn_csv("breast_cancer"), "target", cv_folds=3)
    print(
        f"\n2. {args.watchers} watchers of one run (breast cancer, budget {args.budget:g} s, 2 workers) "
        f"in {args.watch_procs} client processes{title}",
        flush=True,
    )
    sides = {side: Fanout() for side in order}
    for r in range(args.rounds):
        for side in order if r % 2 == 0 else order[::-1]:
            sides[side].add(measure(side, experiment.name))
    return sides


def print_fanouts(rows: list[tuple[str, Fanout]], per_watcher: bool = False) -> None:
    """Figure 2's table: one row per (label, side)."""
    width = max(len(label) for label, _ in rows) + 4
    received_header = f"{'per watcher':>13}" if per_watcher else ""
    print(
        f"{'':<{width}}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'spread':>8}{'events/run':>12}"
        f"{received_header}{'complete':>11}   CPU cores over the runs"
    )
    for label, f in rows:
        events = statistics.mean(f.events)
        received = f"{sum(len(d) for d in f.delays_ms) / f.watchers:>13.1f}" if per_watcher else ""
        cpu = ", ".join(f"{k} {v / f.seconds:.2f}" for k, v in f.cpu.items())
        print(
            f"{label:<{width}}{f.p(50):>8.1f}{f.p(99):>8.1f}{np.concatenate(f.delays_ms).max():>8.1f}"
            f"{statistics.median(f.spreads_ms):>8.1f}{events:>12.1f}{received}"
            f"{f'{f.watchers_complete}/{f.watchers}':>11}   {cpu}"
        )
    print(
        "(spread: median over events of last receipt - first receipt over the watchers; "
        "events/run: mean last_sequence" + ("; per watcher: mean events received)" if per_watcher else ")")
    )


def fanout_section(suite, client, args: argparse.Namespace) -> list[str]:
    """Figure 2; returns the summary lines."""
    sides = watch_rounds(
        client, args, ("notifier", "gateway"), lambda kind, experiment: fanout(kind, suite, experiment, args)
    )
    nf, g = sides["notifier"], sides["gateway"]
    print_fanouts([("notifier StreamEvents", nf), ("gateway WatchRun", g)])
    lines = [
        f"WatchRun fan-out, {args.watchers} watchers: p99 {g.p(99):.1f} ms through the gateway, "
        f"{nf.p(99):.1f} ms straight from the notifier; ratio gateway/notifier p99 "
        f"{g.p(99) / nf.p(99):.2f}, p50 {g.p(50) / nf.p(50):.2f}; "
        f"{g.watchers_complete}/{g.watchers} gateway watchers got every event in order",
    ]
    print("\n".join(lines), flush=True)
    return lines


# --------------------------------------------------------------- 3. upload


def variant(data: bytes, k: int) -> bytes:
    """`data` with the id of its first row changed: other bytes, so storage stores it anew."""
    row = data.index(b"\n") + 1
    assert data.startswith(b"0,", row), "csvgen's first row has id 0"
    return data[:row] + str(10**9 + k).encode() + data[row + 1 :]


def _chunks(data: bytes, name: str) -> Iterator[dataset_pb2.UploadDatasetRequest]:
    yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name=name))
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        yield dataset_pb2.UploadDatasetRequest(chunk=bytes(view[start : start + CHUNK]))


def upload_once(target: str, stub_class, metadata, data: bytes, name: str) -> float:
    """MB/s of one upload (10^6 bytes)."""
    with grpc.insecure_channel(target) as channel:
        stub = stub_class(channel)
        started = time.perf_counter()
        dataset = stub.UploadDataset(_chunks(data, name), metadata=metadata, timeout=3600)
        took = time.perf_counter() - started
    assert dataset.size_bytes == len(data), "the whole file must arrive"
    return len(data) / 1e6 / took


def upload_section(suite, args: argparse.Namespace, tmp: Path) -> list[str]:
    """Figure 3; returns the summary lines."""
    from bench.csvgen import write_csv

    path = write_csv(tmp / "upload.csv", int(args.upload_mb * 1024 * 1024), seed=7)
    data = path.read_bytes()
    path.unlink()
    print(f"\n3. UploadDataset of {len(data) / 1e6:.1f} MB in 1 MiB chunks, {args.repeat} each", flush=True)
    sides = {
        "gateway": (suite.target, automl_service_pb2_grpc.AutoMLStub, bearer(suite.keys[TENANT])),
        "storage": (suite.stack.target("storage"), storage_service_pb2_grpc.StorageStub, tenant_md()),
    }
    pids = {name: suite.stack.procs[name].pid for name in ("gateway", "storage")} | {"client": os.getpid()}
    speeds: dict[str, list[float]] = {"gateway": [], "storage": []}
    k = 0
    for rep in range(args.repeat):
        for side in ("gateway", "storage") if rep % 2 == 0 else ("storage", "gateway"):
            k += 1
            window = CpuWindow(pids)
            window.start()
            mb_s = upload_once(*sides[side], variant(data, k), f"bench-{k}")
            window.stop()
            speeds[side].append(mb_s)
            cpu = ", ".join(f"{name} {used:.2f}" for name, used in window.used.items())
            other = max(0.0, window.machine_cores - sum(window.used.values()) / window.seconds)
            print(f"  {side:<8} {mb_s:6.1f} MB/s   CPU seconds: {cpu}; other load {other:.2f} cores", flush=True)
    gw, st = statistics.median(speeds["gateway"]), statistics.median(speeds["storage"])
    lines = [
        f"UploadDataset median: gateway {gw:.1f} MB/s, storage {st:.1f} MB/s",
        ratio_line("UploadDataset gateway/storage MB/s", gw / st, 0.8),
    ]
    print("\n".join(lines), flush=True)
    return lines


# ------------------------------------------------------------------ main


def ratio_line(name: str, value: float, goal: float) -> str:
    verdict = "met" if value >= goal else f"MISSED by {(1 - value / goal) * 100:.1f}%"
    return f"{name}: {value:.3f} (goal >= {goal:g}: {verdict})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s windows, 100 watchers, 10 s budget, 10 MB once")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["unary", "fanout", "upload", "reads"],
        default=["unary", "fanout", "upload", "reads"],
    )
    parser.add_argument("--results", type=int, default=10_000, help="model results of each run of the reads figure")
    parser.add_argument("--page-size", type=int, default=50, help="leaderboard page of the reads figure")
    parser.add_argument(
        "--reads", nargs="*", default=[], help="reads figure: only the loads whose name holds one of these words"
    )
    parser.add_argument("--clients", type=int, default=50, help="concurrent unary callers")
    parser.add_argument("--channels", type=int, default=5, help="connections the callers share")
    parser.add_argument("--client-procs", type=int, default=1, help="processes holding the callers")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window of each unary figure")
    parser.add_argument("--unary-rounds", type=int, default=2, help="windows per unary figure, interleaved")
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--watch-procs", type=int, default=2, help="processes holding the watchers")
    parser.add_argument("--budget", type=float, default=20.0, help="max_duration of each fan-out run, seconds")
    parser.add_argument("--rounds", type=int, default=4, help="fan-out runs per side, alternating which goes first")
    parser.add_argument("--per-event", action="store_true", help="fan-out: print each event's receipt delays")
    parser.add_argument("--keep", type=Path, help="keep the suite's folder (logs, data) here")
    parser.add_argument("--upload-mb", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3, help="uploads on each side")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.unary_rounds, args.watchers, args.budget, args.rounds = 3.0, 1, 100, 10.0, 1
        args.upload_mb, args.repeat = 10.0, 1

    from tests.gateway.conftest import start_gateway_suite, stop_gateway_suite

    report: list[str] = []
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        folder = args.keep or Path(tmp) / "suite"
        folder.mkdir(parents=True, exist_ok=True)
        suite = start_gateway_suite(folder, SUITE_ENV | {k: os.environ[k] for k in PASSED_ENV if k in os.environ})
        try:
            client = suite.client()
            pids = {name: proc.pid for name, proc in suite.stack.procs.items()}
            print(f"suite up in {folder}: {', '.join(f'{k} pid {v}' for k, v in pids.items())}", flush=True)

            if "unary" in args.only:
                report += unary_section(suite, client, args, folder)
            if "fanout" in args.only:
                report += fanout_section(suite, client, args)
            if "upload" in args.only:
                report += upload_section(suite, args, Path(tmp))
            if "reads" in args.only:
                report += reads_section(suite, client, args)
        finally:
            stop_gateway_suite(suite)
    print("\nsummary:\n  " + "\n  ".join(report))


if __name__ == "__main__":
    main()
