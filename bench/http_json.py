"""The gateway's HTTP/JSON door (issue 11): GetRun and WatchRun over HTTP
against the same calls over gRPC through the same gateway, in one run on one
suite.

Starts storage, notifier, runner and gateway as real processes with
bench/gateway.py's start-up (SQLite, API keys on, production defaults for the
key cache and the supervisor) and measures:

1. unary  GET /v1/runs/{id} (GetRun of one ended run: iris, max_models 2) from
          C concurrent callers for S seconds: requests/s, p50, p99. Baseline:
          the same GetRun over gRPC through the same gateway with bench/gateway.py's
          client harness (C coroutines over a few channels), windows
          interleaved, the order reversed every other round. Goal:
          HTTP/gRPC >= 0.5; the HTTP figure is also set beside the 1,000
          requests/s of the original design. HTTP callers: C coroutine loops
          in one client process (--http-procs spreads them), HTTP/1.1
          keep-alive, one connection per caller, each answer's JSON parsed (as
          the gRPC client parses its Run); two clients (--http-clients):
          "lean", an asyncio stream per caller that writes the request bytes
          and reads the answer by its Content-Length (about 0.08 ms of CPU per
          call, as little as grpc.aio's C core on the gRPC side: the figure
          set against the goal), and "httpx", one httpx.AsyncClient with a
          pool of C connections (about 4 ms of CPU per call with httpcore
          1.0.9's pool at 50 connections: the client, not the door, is then
          the bottleneck). CPU seconds per request of the gateway, storage
          and client processes over the same windows, and the client's share
          of a core. For the diagnosis, the same doors of a second gateway
          process whose storage is a bare echo server (bench/gateway.py's
          stand-in: GetRun and LookupApiKey at no cost): the doors' own
          ceilings, storage left out.
2. fanout W watchers of one live run (breast cancer, 3 folds, a time budget of
          B seconds, 2 workers), all open before the run starts (run created
          PENDING in storage, started with the runner's ExecuteRun once every
          watcher has its snapshot): W streaming GETs of
          /v1/runs/{id}:watch (NDJSON), and the baseline, W gRPC WatchRun
          streams through the same gateway, on a second run of the same kind,
          one after the other (each round one run per side; the next round
          the other side first). Per delivered event: delay = receipt -
          createTime (stamped by the runner, same clock); p50, p99 over every
          watcher and event, pooled over --rounds; events per watcher; every
          watcher must get events 1..last_sequence, no gap, no repeat.

    .venv/bin/python -m bench.http_json [--quick] [--only unary fanout] [--profile [STATS]]

--profile: afterwards, one HTTP window against a third gateway process (real
storage) run under cProfile; prints where its time goes (cProfile slows the
process, so shares, not speeds) and keeps the stats in STATS (default
$TMPDIR/automl-gateway-http.prof).

AUTOML_LOG_LEVEL, AUTOML_API_KEY_CACHE_SECONDS, AUTOML_STREAM_MESSAGES_PER_SECOND
and AUTOML_SUBSCRIBER_QUEUE in the environment are passed to the services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import numpy as np
from google.protobuf import timestamp_pb2

from automl.v1 import (
    run_pb2,
    storage_service_pb2,
)
from bench.gateway import (
    PASSED_ENV,
    ROOT,
    SUITE_ENV,
    TENANT,
    Fanout,
    Target,
    Unary,
    Watched,
    _echo_server,
    _watch_worker,
    bearer,
    client_window,
    print_fanouts,
    ratio_line,
    shares,
    unary,
    watch_rounds,
)
from bench.gateway import fanout as gateway_fanout

DESIGN_RPS = 1000.0  # the original design's GetRun figure


# ---------------------------------------------------------------- 1. unary


class _LeanConnection:
    """One HTTP/1.1 keep-alive connection, one request at a time: asyncio streams, the
    request bytes built once, the answer read by its Content-Length. What an HTTP
    client costs at the least (0.03-0.06 ms of CPU per GET here), as grpc.aio's C
    core is on the gRPC side."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = (
            f"GET {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\nauthorization: Bearer {key}\r\n"
            "accept: application/json\r\n\r\n"
        ).encode()

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)  # TCP_NODELAY set

    async def get(self) -> tuple[int, bytes]:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"answer without Content-Length: {head[:200]!r}")
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
        return int(head[9:12]), await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _http_hammer(
    client_kind: str, url: str, key: str, concurrency: int, warmup: float, seconds: float, ready, go, go_at
) -> np.ndarray:
    """`concurrency` loops of GET `url` with client_kind "httpx" (one httpx.AsyncClient,
    HTTP/1.1 keep-alive, a pool of `concurrency` connections) or "lean" (one
    _LeanConnection per loop); each answer's JSON parsed."""
    import httpx

    expected = url.split("/v1/", 1)[1]

    def check(status: int, body: bytes) -> None:
        if status != 200:
            raise RuntimeError(f"GET {url}: {status} {body[:200]!r}")

    if client_kind == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        shared = httpx.AsyncClient(
            http1=True, http2=False, limits=limits, headers={"authorization": f"Bearer {key}"}, timeout=30
        )

        async def fetch(i: int) -> bytes:
            response = await shared.get(url)
            check(response.status_code, response.content)
            return response.content

        async def close() -> None:
            await shared.aclose()
    else:
        connections = [_LeanConnection(url, key) for _ in range(concurrency)]
        await asyncio.gather(*(c.open() for c in connections))

        async def fetch(i: int) -> bytes:
            status, body = await connections[i].get()
            check(status, body)
            return body

        async def close() -> None:
            await asyncio.gather(*(c.close() for c in connections))

    try:
        answers = await asyncio.gather(*(fetch(i) for i in range(concurrency)))  # every connection answering
        if any(json.loads(body)["name"] != expected for body in answers):
            raise RuntimeError(f"GET {url}: another run answered")
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.01)
        begin = go_at.value + warmup
        end = begin + seconds
        latencies: list[float] = []

        async def loop(i: int) -> None:
            while (sent := time.monotonic()) < end:
                json.loads(await fetch(i))
                done = time.monotonic()
                if begin <= done < end:
                    latencies.append(done - sent)

        await asyncio.gather(*(loop(i) for i in range(concurrency)))
    finally:
        await close()
    return np.asarray(latencies)


def _http_hammer_worker(args: tuple, ready, go, go_at, out) -> None:
    try:
        out.put(asyncio.run(_http_hammer(*args, ready, go, go_at)))
    except BaseException as exc:
        out.put(f"HTTP client failed: {exc!r}")
        raise


def http_unary(
    client_kind: str, url: str, key: str, pids: dict[str, int], args: argparse.Namespace, into: Unary
) -> None:
    """One window of `args.seconds` (after 1 s of warm-up) of `args.clients` HTTP callers on `url`;
    bench.gateway.unary's window, with an HTTP client (`client_kind`: lean or httpx)."""
    works = [(client_kind, url, key, share, 1.0, args.seconds) for share in shares(args.clients, args.http_procs)]
    client_window(url, _http_hammer_worker, works, pids, args.seconds, into)


def _echo_gateway(suite, folder: Path, echo_address: str, name: str, command: list[str] | None = None):
    """A second gateway process whose storage is `echo_address` (or the suite's storage
    when echo_address is empty), on ports of its own; (process, gRPC address, HTTP URL)."""
    from tests.conftest import spawn, wait_serving
    from tests.ports import free_port

    env = suite.env | {"AUTOML_GATEWAY_PORT": str(free_port()), "AUTOML_HTTP_PORT": str(free_port())}
    if echo_address:
        env["AUTOML_STORAGE_TARGET"] = echo_address
    log = folder / f"{name}.log"
    if command is None:
        proc = spawn("gateway", env, log)
    else:
        with log.open("ab") as output:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    address = f"127.0.0.1:{env['AUTOML_GATEWAY_PORT']}"
    wait_serving(address, "automl.v1.AutoML", proc, timeout=120, log=log)
    return proc, address, f"http://127.0.0.1:{env['AUTOML_HTTP_PORT']}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ended_run(client) -> run_pb2.Run:
    from tests.runner.conftest import sklearn_csv

    experiment = client.experiment(sklearn_csv("iris"), "target", cv_folds=3)
    return client.wait_end(client.start(experiment, max_models=2))


def unary_section(suite, client, args: argparse.Namespace, folder: Path) -> list[str]:
    """Figure 1; returns the summary lines."""
    from tests.ports import free_port

    run = _ended_run(client)
    request = run_pb2.GetRunRequest(name=run.name)
    key = suite.keys[TENANT]
    pids = {name: proc.pid for name, proc in suite.stack.procs.items()}
    answer = run.SerializeToString()
    port = free_port()
    answers = {
        "/automl.v1.Storage/GetRun": answer,
        "/automl.v1.Storage/LookupApiKey": storage_service_pb2.ApiKey(tenant=TENANT).SerializeToString(),
    }
    echo = mp.get_context("spawn").Process(target=_echo_server, args=(port, answers), daemon=True)
    echo.start()
    stand_in = None
    try:
        echo_address = f"127.0.0.1:{port}"
        with grpc.insecure_channel(echo_address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        stand_in, stand_in_address, stand_in_http = _echo_gateway(suite, folder, echo_address, "gateway-on-echo")
        # (label, how): a Target runs bench.gateway.unary, (client kind, URL, pids) http_unary
        on_storage = {"gateway": pids["gateway"], "storage": pids["storage"]}
        on_echo = {"gateway": stand_in.pid, "echo": echo.pid}
        figures: list[tuple[str, Target | tuple[str, str, dict[str, int]]]] = [
            ("gRPC -> storage", Target("gRPC", suite.target, "/automl.v1.AutoML/GetRun", bearer(key), on_storage)),
        ]
        figures += [(f"HTTP {c} -> storage", (c, f"{suite.http}/v1/{run.name}", on_storage)) for c in args.http_clients]
        figures += [
            ("gRPC -> echo", Target("gRPC", stand_in_address, "/automl.v1.AutoML/GetRun", bearer(key), on_echo)),
            (f"HTTP {args.http_clients[0]} -> echo", (args.http_clients[0], f"{stand_in_http}/v1/{run.name}", on_echo)),
        ]
        print(
            f"\n1. GetRun of {run.name} ({len(answer)} bytes as protobuf), {args.clients} concurrent callers; "
            f"gRPC: {args.channels} connections in {args.client_procs} client process(es); HTTP/1.1 keep-alive, "
            f"{args.clients} connections in {args.http_procs} client process(es), lean: one asyncio stream per "
            f"caller, httpx: one AsyncClient with a pool of {args.clients}; "
            f"{args.unary_rounds} x {args.seconds:g} s each, interleaved",
            flush=True,
        )
        results = {label: Unary() for label, _ in figures}
        for r in range(args.unary_rounds):
            for label, how in figures if r % 2 == 0 else figures[::-1]:
                if isinstance(how, Target):
                    unary(how, request, args, results[label])
                else:
                    http_unary(how[0], how[1], key, how[2], args, results[label])
                print(f"  round {r + 1} {label}: {results[label].requests_per_s:,.0f} requests/s so far", flush=True)
    finally:
        if stand_in is not None:
            _stop(stand_in)
        echo.kill()
        echo.join(10)
    print(
        f"{'':<22}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'busy cores':>11}{'other':>7}{'client cores':>13}"
        "   CPU ms per request"
    )
    for label, r in results.items():
        cpu = ", ".join(f"{k} {v:.3f}" for k, v in r.cpu_ms().items())
        print(
            f"{label:<22}{r.requests_per_s:>8.0f}{r.ms(50):>8.1f}{r.ms(99):>8.1f}{r.busy / r.seconds:>11.2f}"
            f"{max(0.0, r.other) / r.seconds:>7.2f}{r.cpu['client'] / r.seconds:>13.2f}   {cpu}"
        )
    g, ge = results["gRPC -> storage"], results["gRPC -> echo"]
    main_client = args.http_clients[0]
    h, he = results[f"HTTP {main_client} -> storage"], results[f"HTTP {main_client} -> echo"]
    lines = [
        ratio_line(
            f"GetRun HTTP ({main_client} client)/gRPC requests/s through the gateway",
            h.requests_per_s / g.requests_per_s,
            0.5,
        ),
    ]
    for c in args.http_clients:
        r = results[f"HTTP {c} -> storage"]
        lines.append(
            f"GetRun over HTTP, {c} client: {r.requests_per_s:,.0f} requests/s (p50 {r.ms(50):.1f} ms, p99 "
            f"{r.ms(99):.1f} ms), {r.requests_per_s / DESIGN_RPS:.2f}x the {DESIGN_RPS:,.0f} requests/s of the "
            f"original design, {r.requests_per_s / g.requests_per_s:.3f}x gRPC; "
            f"client {r.cpu['client'] / r.seconds:.2f} of a core, {r.cpu_ms()['client']:.3f} ms CPU per request; "
            f"gateway {r.cpu_ms()['gateway']:.3f} ms"
        )
    server = {
        label: r.cpu_ms()["gateway"] + r.cpu_ms()["storage"] for label, r in results.items() if "storage" in label
    }
    h_label = f"HTTP {main_client} -> storage"
    lines.append(
        f"server CPU per request (gateway + storage): gRPC {server['gRPC -> storage']:.3f} ms, HTTP "
        f"{server[h_label]:.3f} ms; gRPC/HTTP {server['gRPC -> storage'] / server[h_label]:.2f} (the requests/s "
        "ratio if the two servers alone took the CPU; less moved by the shared machine's other load than the "
        "measured ratio)"
    )
    lines += [
        f"GetRun over gRPC: {g.requests_per_s:,.0f} requests/s (p50 {g.ms(50):.1f} ms, p99 {g.ms(99):.1f} ms); client "
        f"{g.cpu['client'] / g.seconds:.2f} of a core, {g.cpu_ms()['client']:.3f} ms CPU per request; gateway "
        f"{g.cpu_ms()['gateway']:.3f} ms",
        f"diagnosis, storage left out (gateway on the echo stand-in): HTTP {he.requests_per_s:,.0f} vs gRPC "
        f"{ge.requests_per_s:,.0f} requests/s, ratio {he.requests_per_s / ge.requests_per_s:.2f}; gateway CPU "
        f"per request {he.cpu_ms()['gateway']:.3f} vs {ge.cpu_ms()['gateway']:.3f} ms",
    ]
    print("\n".join(lines), flush=True)
    return lines


# -------------------------------------------------------------- 2. fan-out


def _nanos(rfc3339: str) -> int:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(rfc3339)
    return stamp.ToNanoseconds()


async def _http_watchers(url: str, key: str, count: int, ready, timeout: float) -> Watched:
    import httpx

    sequences: list[list[int]] = [[] for _ in range(count)]
    delays: list[list[float]] = [[] for _ in range(count)]
    opened = asyncio.Semaphore(0)
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    timeouts = httpx.Timeout(timeout, connect=60)
    async with httpx.AsyncClient(
        http1=True, limits=limits, timeout=timeouts, headers={"authorization": f"Bearer {key}"}
    ) as client:

        async def watch(i: int) -> None:
            seen, delay = sequences[i], delays[i]
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"GET {url}: {response.status_code} {(await response.aread())[:200]!r}")
                async for line in response.aiter_lines():
                    now = time.time_ns()
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if "snapshot" in message:
                        opened.release()
                    elif "batch" in message:
                        for event in message["batch"].get("events", ()):
                            delay.append((now - _nanos(event["createTime"])) / 1e6)
                            seen.append(int(event["sequence"]))
                    elif "error" in message:
                        raise RuntimeError(f"watcher {i}: {message['error']}")

        tasks = [asyncio.create_task(watch(i)) for i in range(count)]

        async def all_opened() -> None:
            for _ in range(count):
                await opened.acquire()

        waiting = asyncio.create_task(all_opened())
        done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:  # a watcher ended (failed) before every snapshot came
            waiting.cancel()
            for task in done:
                task.result()
            raise RuntimeError("a watcher ended before the run started")
        await asyncio.sleep(1.0 + count / 500)  # every stream subscribed behind the gateway too
        ready.set()
        await asyncio.gather(*tasks)
    return Watched(sequences, delays)


def _http_watch_worker(kind: str, target: str, run: str, key: str, count: int, ready, timeout: float, out) -> None:
    """bench.gateway._watch_worker's signature; `target` is the gateway's HTTP base URL."""
    try:
        out.put(asyncio.run(_http_watchers(f"{target}/v1/{run}:watch", key, count, ready, timeout)))
    except BaseException as exc:
        out.put(f"{kind} watchers failed: {exc!r}")
        raise


SIDES = {
    # side: (label, worker, bench.gateway kind passed to the worker)
    "http": ("HTTP :watch NDJSON", _http_watch_worker, "http"),
    "grpc": ("gRPC WatchRun", _watch_worker, "gateway"),
}


def fanout(side: str, suite, experiment: str, args: argparse.Namespace) -> Fanout:
    """One run watched by args.watchers watchers of `side`: bench.gateway.fanout with the
    HTTP watcher beside its gRPC one."""
    label, worker, kind = SIDES[side]
    target = suite.http if side == "http" else suite.target
    return gateway_fanout(kind, suite, experiment, args, target=target, worker=worker, label=label)


def fanout_section(suite, client, args: argparse.Namespace) -> list[str]:
    """Figure 2; returns the summary lines."""
    sides = watch_rounds(
        client,
        args,
        ("http", "grpc"),
        lambda side, experiment: fanout(side, suite, experiment, args),
        title=f", {args.rounds} run(s) per side",
    )
    h, g = sides["http"], sides["grpc"]
    print_fanouts([(SIDES[side][0], f) for side, f in sides.items()], per_watcher=True)
    lines = [
        f"WatchRun fan-out, {args.watchers} watchers: p50/p99 {h.p(50):.1f}/{h.p(99):.1f} ms over HTTP, "
        f"{g.p(50):.1f}/{g.p(99):.1f} ms over gRPC; ratio HTTP/gRPC p99 {h.p(99) / g.p(99):.2f}, "
        f"p50 {h.p(50) / g.p(50):.2f}",
        f"events per watcher {sum(len(d) for d in h.delays_ms) / h.watchers:.1f} HTTP, "
        f"{sum(len(d) for d in g.delays_ms) / g.watchers:.1f} gRPC; every sequence once in order: "
        f"{h.watchers_complete}/{h.watchers} HTTP watchers, {g.watchers_complete}/{g.watchers} gRPC watchers",
    ]
    print("\n".join(lines), flush=True)
    return lines


# --------------------------------------------------------------- profile

PROFILED_GATEWAY = (
    "import cProfile, runpy, sys\n"
    "cProfile.run(\"runpy.run_module('gateway', run_name='__main__', alter_sys=True)\", sys.argv[1])\n"
)


def profile_section(suite, client, args: argparse.Namespace, folder: Path) -> list[str]:
    """One HTTP window against a gateway process under cProfile (real storage)."""
    run = _ended_run(client)
    stats_path = Path(args.profile)
    proc, _, http = _echo_gateway(
        suite, folder, "", "gateway-profiled", [sys.executable, "-c", PROFILED_GATEWAY, str(stats_path)]
    )
    result = Unary()
    try:
        print(f"\n3. cProfile of a gateway under {args.clients} HTTP callers for {args.seconds:g} s", flush=True)
        pids = {"gateway": proc.pid, "storage": suite.stack.procs["storage"].pid}
        http_unary(args.http_clients[0], f"{http}/v1/{run.name}", suite.keys[TENANT], pids, args, result)
    finally:
        _stop(proc)
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in result.cpu_ms().items())
    print(f"  {result.requests_per_s:,.0f} requests/s under cProfile; CPU ms per request: {cpu}")
    stats = pstats.Stats(str(stats_path))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(45)
    return [f"cProfile of the gateway under HTTP GetRun: {stats_path} ({result.requests_per_s:,.0f} requests/s)"]


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s windows once, 50 watchers, 10 s budget, 1 round")
    parser.add_argument("--only", nargs="+", choices=["unary", "fanout"], default=["unary", "fanout"])
    parser.add_argument(
        "--profile",
        nargs="?",
        const=str(Path(tempfile.gettempdir()) / "automl-gateway-http.prof"),
        metavar="STATS",
        help="then cProfile a gateway under HTTP GetRun, stats written to STATS",
    )
    parser.add_argument("--clients", type=int, default=50, help="concurrent unary callers, each side")
    parser.add_argument("--channels", type=int, default=5, help="gRPC connections the callers share")
    parser.add_argument("--client-procs", type=int, default=1, help="processes holding the gRPC callers")
    parser.add_argument("--http-procs", type=int, default=1, help="processes holding the HTTP callers")
    parser.add_argument(
        "--http-clients",
        nargs="+",
        choices=["lean", "httpx"],
        default=["lean", "httpx"],
        help="HTTP clients measured; the first one's figure is set against the goal and used for the diagnosis",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window of each unary figure")
    parser.add_argument("--unary-rounds", type=int, default=2, help="windows per unary figure, interleaved")
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--watch-procs", type=int, default=2, help="processes holding the watchers")
    parser.add_argument("--budget", type=float, default=20.0, help="max_duration of each fan-out run, seconds")
    parser.add_argument("--rounds", type=int, default=4, help="fan-out runs per side, alternating which goes first")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.unary_rounds, args.watchers, args.budget, args.rounds = 3.0, 1, 50, 10.0, 1

    from tests.gateway.conftest import start_gateway_suite, stop_gateway_suite

    report: list[str] = []
    with tempfile.TemporaryDirectory(prefix="automl-bench-http-") as tmp:
        folder = Path(tmp) / "suite"
        folder.mkdir()
        suite = start_gateway_suite(folder, SUITE_ENV | {k: os.environ[k] for k in PASSED_ENV if k in os.environ})
        try:
            client = suite.client()
            pids = {name: proc.pid for name, proc in suite.stack.procs.items()}
            print(f"suite up in {folder}: {', '.join(f'{k} pid {v}' for k, v in pids.items())}", flush=True)
            if "unary" in args.only:
                report += unary_section(suite, client, args, folder)
            if "fanout" in args.only:
                report += fanout_section(suite, client, args)
            if args.profile:
                report += profile_section(suite, client, args, folder)
        finally:
            stop_gateway_suite(suite)
    print("\nsummary:\n  " + "\n  ".join(report))


if __name__ == "__main__":
    main()
