"""Storage's hot reads (issue 23): CPU per call of the storage process for
GetRun, ListRuns, GetLeaderboard, LookupApiKey and ListRunRecords, against a
bare grpc.aio server answering the same bytes, measured in the same run.

The storage service runs as a real process (`python -m services.storage`,
SQLite and blobs in a temporary folder, the production interceptor chain,
INFO logs to a file); its database is filled beforehand through the
repository:

- GetRun        an ended run (SUCCEEDED, 2 results, notes), by name
- ListRuns      the first page (50, no filter) of a tenant's 72 runs
- GetLeaderboard the first page (50) of a 10,000-result run (4 metrics each)
- LookupApiKey  a key by its hash (what the gateway asks once per key and cache period)
- ListRunRecords the supervisor's round: every tenant ("*"), state=RUN_STATE_RUNNING,
                page_size 1000 (20 running runs, 3 results each)

Each read is called by C concurrent callers (coroutines of one client
process, raw bytes, the suite's credential and a tenant in the metadata) for
S seconds after 1 s of warm-up, on storage and then on the echo server (the
order reversed every other round); the CPU seconds of the server process
over the window, divided by the calls answered, give "CPU ms per call".
The echo server answers each method with the bytes storage answered: the
cost of gRPC and asyncio alone.

Storage keeps these answers until the database changes (SQLite:
services/storage/answers.py), so a quiet database measures the kept path;
--writes-per-second N has another process commit a running run's heartbeat
N times a second meanwhile (a search writes a few results and heartbeats a
second), each commit dropping what storage kept.

    .venv/bin/python -m bench.storage_reads [--seconds 4] [--rounds 2] [--only GetRun ...] [--writes-per-second 50]
    .venv/bin/python -m bench.storage_reads --py-spy /tmp/storage.svg --only GetRun   # needs py-spy
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from automl.common import identity  # noqa: E402
from automl.v1 import common_pb2 as c  # noqa: E402
from automl.v1 import run_pb2, storage_service_pb2  # noqa: E402
from bench.cpu import CpuWindow  # noqa: E402
from tests import internal  # noqa: E402

TENANT = "alpha"
METRICS = (c.METRIC_ACCURACY, c.METRIC_BALANCED_ACCURACY, c.METRIC_F1_MACRO, c.METRIC_LOG_LOSS)
READS = ("GetRun", "ListRuns", "GetLeaderboard", "LookupApiKey", "ListRunRecords")


@dataclass
class Read:
    method: str
    request: bytes
    who: str = identity.GATEWAY
    tenant: str = TENANT
    answer: bytes = b""

    @property
    def path(self) -> str:
        return f"/automl.v1.Storage/{self.method}"

    def metadata(self) -> list[tuple[str, str]]:
        return [
            *internal.credentials(self.who).metadata(),
            ("x-automl-tenant", self.tenant),
            ("x-request-id", "bench-storage-reads"),
        ]


# ------------------------------------------------------------------ the data


def _result(rng: np.random.Generator, score: float) -> dict:
    return {
        "outcome": run_pb2.ModelResult.OUTCOME_SUCCEEDED,
        "model_family": "RandomForestClassifier",
        "model_json": '["RandomForestClassifier", {"n_estimators": 100}]',
        "pipeline_steps": ["NumImputer", "RandomForestClassifier"],
        "folds": [{"foldNb": k, "values": {"test_accuracy": score, "fit_time": 0.1}} for k in range(5)],
        "metrics": [{"metric": m, "mean": float(rng.random()), "std": 0.01} for m in METRICS],
        "primary_score": score,
        "folds_run": 5,
        "fit_time_seconds": 0.5,
        "score_time_seconds": 0.1,
    }


def fill(url: str) -> tuple[dict[str, Read], str]:
    """The database of the benchmark; returns the five reads' requests and a
    running run (what the writer heartbeats)."""
    from services.storage import db
    from services.storage.repository import MetadataStore, StoredContent

    engine = db.make_engine(url)
    db.upgrade(engine)
    store = MetadataStore(engine)
    rng = np.random.default_rng(0)
    csv = b"x,label\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(100))
    content = StoredContent(hashlib.sha256(csv).hexdigest(), len(csv), inline_data=csv)
    columns = [
        {"name": "x", "index": 0, "inferredType": "COLUMN_TYPE_NUMERIC", "distinctCount": "100"},
        {"name": "label", "index": 1, "inferredType": "COLUMN_TYPE_NUMERIC", "distinctCount": "2"},
    ]
    dataset, _ = store.create_dataset(
        TENANT, display_name="bench", description="", csv_options={}, content=content, row_count=100, columns=columns
    )
    experiment = store.create_experiment(
        TENANT, experiment_id="bench-reads", dataset_id=dataset.id, display_name="", description="",
        target_column="label", task=c.TASK_CLASSIFICATION, primary_metric=0, cv_folds=5, holdout_fraction=0.2,
        seed=0, allowed_model_families=[], excluded_columns=[], default_stop_conditions={},
    )  # fmt: skip

    def run(results: int, end: bool, batch: int = 1000) -> str:
        run_id = store.create_run(TENANT, experiment.id, {"maxModels": 10**6, "maxDuration": "60s"}, 2).id
        store.update_run_state(
            TENANT, run_id, expected=[c.RUN_STATE_PENDING], state=c.RUN_STATE_RUNNING, runner_id="runner-1"
        )
        for start in range(0, results, batch):
            n = min(batch, results - start)
            store.create_results(TENANT, run_id, [_result(rng, float(rng.random())) for _ in range(n)])
        if end:
            store.update_run_state(
                TENANT,
                run_id,
                expected=[c.RUN_STATE_RUNNING],
                state=c.RUN_STATE_SUCCEEDED,
                stop_reason=c.STOP_REASON_MAX_MODELS,
                status_message="finished: max_models reached",
                add_notes=["the dataset has 100 rows: 5 folds of 20"],
            )
        return run_id

    leaderboard_run = run(10_000, end=True)
    running = [run(3, end=False) for _ in range(20)]
    for _ in range(50):
        run(2, end=True)
    get_run = run(2, end=True)
    key = store.create_api_key(TENANT, "bench", "ak_bench", hashlib.sha256(b"ak_bench_key").hexdigest())
    engine.dispose()
    reads = {
        "GetRun": Read("GetRun", run_pb2.GetRunRequest(name=f"runs/{get_run}").SerializeToString()),
        "ListRuns": Read("ListRuns", run_pb2.ListRunsRequest(page_size=50).SerializeToString()),
        "GetLeaderboard": Read(
            "GetLeaderboard",
            run_pb2.GetLeaderboardRequest(run=f"runs/{leaderboard_run}", page_size=50).SerializeToString(),
        ),
        "LookupApiKey": Read(
            "LookupApiKey",
            storage_service_pb2.LookupApiKeyRequest(key_sha256=key.key_sha256).SerializeToString(),
            tenant="",
        ),
        "ListRunRecords": Read(
            "ListRunRecords",
            storage_service_pb2.ListRunRecordsRequest(
                page_size=1000, filter="state=RUN_STATE_RUNNING"
            ).SerializeToString(),
            who=identity.SUPERVISOR,
            tenant=identity.ALL_TENANTS,
        ),
    }
    return reads, running[0]


# --------------------------------------------------------------- processes


def _writer(url: str, run_id: str, per_second: float, stop, out) -> None:
    """Commits a heartbeat of the running `run_id` `per_second` times a second,
    straight to the database file, until `stop` is set; puts how many."""
    from services.storage import db
    from services.storage.repository import MetadataStore

    store = MetadataStore(db.make_engine(url))
    done = 0
    period = 1.0 / per_second
    next_at = time.monotonic()
    while not stop.is_set():
        store.heartbeat_run(TENANT, run_id, "runner-1")
        done += 1
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    out.put(done)


def _echo_server(port: int, answers: dict[str, bytes]) -> None:
    """A bare grpc.aio server answering each method of `answers` with its fixed bytes."""

    def answering(answer: bytes):
        async def echo(request: bytes, ctx: grpc.aio.ServicerContext) -> bytes:
            return answer

        return grpc.unary_unary_rpc_method_handler(echo)

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handlers = {path.rsplit("/", 1)[1]: answering(answer) for path, answer in answers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("automl.v1.Storage", handlers),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


async def _hammer(target: str, read: Read, concurrency: int, channels: int, seconds: float, ready, go) -> int:
    chans = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(channels)
    ]
    calls = [ch.unary_unary(read.path) for ch in chans]
    metadata = read.metadata()
    for call in calls:
        await call(read.request, metadata=metadata, timeout=30)
    ready.set()
    while not go.is_set():
        await asyncio.sleep(0.005)
    begin = time.monotonic() + 1.0
    end = begin + seconds
    counted = 0

    async def loop(call) -> None:
        nonlocal counted
        while time.monotonic() < end:
            await call(read.request, metadata=metadata, timeout=30)
            if begin <= time.monotonic() < end:
                counted += 1

    await asyncio.gather(*(loop(calls[i % channels]) for i in range(concurrency)))
    for ch in chans:
        await ch.close()
    return counted


def _hammer_worker(target: str, read: Read, concurrency: int, channels: int, seconds: float, ready, go, out) -> None:
    try:
        out.put(asyncio.run(_hammer(target, read, concurrency, channels, seconds, ready, go)))
    except BaseException as exc:
        out.put(f"client failed: {exc!r}")
        raise


@dataclass
class Figure:
    calls: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # server CPU seconds
    samples: list[float] = field(default_factory=list)  # CPU ms per call, per window

    def ms(self) -> float:
        return self.cpu / max(self.calls, 1) * 1e3


def window(target: str, pid: int, read: Read, args: argparse.Namespace, into: Figure) -> None:
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_hammer_worker,
        args=(target, read, args.clients, args.channels, args.seconds, ready, go, out),
        daemon=True,
    )
    proc.start()
    try:
        if not ready.wait(60):
            raise SystemExit(f"{read.method} on {target}: the client did not connect within 60 s")
        cpu = CpuWindow({"server": pid})
        go.set()
        time.sleep(1.0)
        cpu.start()
        time.sleep(args.seconds)
        cpu.stop()
        counted = out.get(timeout=120)
        if isinstance(counted, str):
            raise SystemExit(counted)
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
    into.calls += counted
    into.seconds += args.seconds
    into.cpu += cpu.used["server"]
    into.samples.append(cpu.used["server"] / max(counted, 1) * 1e3)


def wait_ready(target: str, proc: subprocess.Popen | mp.Process, log: Path | None = None) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            with grpc.insecure_channel(target) as channel:
                grpc.channel_ready_future(channel).result(timeout=1)
            return
        except grpc.FutureTimeoutError:
            alive = proc.poll() is None if isinstance(proc, subprocess.Popen) else proc.is_alive()
            if not alive or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log else ""
                raise SystemExit(f"{target} did not start: {tail}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each window (after 1 s of warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="windows per read and server, order reversed every other")
    parser.add_argument("--clients", type=int, default=20, help="concurrent callers")
    parser.add_argument("--channels", type=int, default=2, help="connections of the client")
    parser.add_argument("--only", nargs="+", choices=READS, default=list(READS))
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="py-spy record of storage over one more window per read (.svg, or .txt: collapsed)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (storage's log)")
    parser.add_argument(
        "--writes-per-second",
        type=float,
        default=0.0,
        help="commits per second to the database meanwhile (a running run's heartbeat, from another process): "
        "each drops storage's kept answers",
    )
    args = parser.parse_args()
    from tests.conftest import spawn, suite_env
    from tests.ports import free_port

    folder = Path(tempfile.mkdtemp(prefix="automl-storage-reads-"))
    env = suite_env(folder)
    env["AUTOML_BLOB_URL"] = f"file://{folder / 'blobs'}"
    url = f"sqlite:///{folder / 'data' / 'automl.db'}"
    env["AUTOML_DATABASE_URL"] = url
    for name in ("AUTOML_LOG_LEVEL", "AUTOML_LOG_FORMAT"):
        if name in os.environ:
            env[name] = os.environ[name]
    (folder / "data").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    reads, running = fill(url)
    print(f"filled the database in {time.monotonic() - started:.1f} s ({folder})", flush=True)
    log = folder / "storage.log"
    storage = spawn("services.storage", env, log)
    echo = None
    try:
        storage_target = f"127.0.0.1:{env['AUTOML_STORAGE_PORT']}"
        wait_ready(storage_target, storage, log)
        with grpc.insecure_channel(storage_target) as channel:
            for read in reads.values():
                read.answer = channel.unary_unary(read.path)(read.request, metadata=read.metadata(), timeout=60)
        echo_port = free_port()
        echo = mp.get_context("spawn").Process(
            target=_echo_server, args=(echo_port, {r.path: r.answer for r in reads.values()}), daemon=True
        )
        echo.start()
        echo_target = f"127.0.0.1:{echo_port}"
        wait_ready(echo_target, echo)
        servers = [("storage", storage_target, storage.pid), ("echo", echo_target, echo.pid)]
        if args.writes_per_second > 0:
            spawn_ctx = mp.get_context("spawn")
            stop_writes, writes_done = spawn_ctx.Event(), spawn_ctx.Queue()
            writer = spawn_ctx.Process(
                target=_writer, args=(url, running, args.writes_per_second, stop_writes, writes_done), daemon=True
            )
            writer.start()
            writes_started = time.monotonic()
        print(
            f"{args.clients} callers on {args.channels} connections, {args.rounds} x {args.seconds:g} s "
            f"per read and server, interleaved; CPU ms per call of the server process",
            flush=True,
        )
        figures = {(m, s): Figure() for m in args.only for s, *_ in servers}
        for r in range(args.rounds):
            for method in args.only:
                for label, target, pid in servers if r % 2 == 0 else servers[::-1]:
                    window(target, pid, reads[method], args, figures[method, label])
        if args.writes_per_second > 0:
            stop_writes.set()
            written = writes_done.get(timeout=60)
            writer.join(30)
            print(f"{written} commits by the writer, {written / (time.monotonic() - writes_started):.1f} per second")
        print(
            f"{'read':<16}{'answer B':>9}{'storage':>10}{'echo':>8}{'storage-echo':>14}{'storage/echo':>14}"
            f"{'storage calls/s':>17}   storage per window"
        )
        for method in args.only:
            s, e = figures[method, "storage"], figures[method, "echo"]
            print(
                f"{method:<16}{len(reads[method].answer):>9}{s.ms():>10.3f}{e.ms():>8.3f}{s.ms() - e.ms():>14.3f}"
                f"{s.ms() / e.ms():>14.2f}{s.calls / s.seconds:>17.0f}   " + " ".join(f"{v:.3f}" for v in s.samples),
                flush=True,
            )
        if args.py_spy:
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            for method in args.only:
                stem, dot, ext = args.py_spy.rpartition(".")
                out = args.py_spy if len(args.only) == 1 else f"{stem}-{method}{dot}{ext}"
                fmt = "raw" if ext == "txt" else "flamegraph"  # raw: collapsed stacks, one line per stack
                command = [spy, "record", "--pid", str(storage.pid), "--rate", "250", "--nonblocking"]
                command += ["-o", out, "--format", fmt, "--duration", str(int(args.seconds) + 2)]
                recorder = subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                window(storage_target, storage.pid, reads[method], args, Figure())
                recorder.wait(60)
                print(f"py-spy of storage under {method}: {out}", flush=True)
    finally:
        storage.terminate()
        storage.wait(30)
        if echo is not None:
            echo.kill()
            echo.join(10)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
