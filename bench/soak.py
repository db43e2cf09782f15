"""Soak test (issue 22): minutes of mixed load through the public gateway, and
whether the four services stay flat.

Starts storage, notifier, runner and gateway as real processes on loopback
(embedded defaults: SQLite, blobs in a folder; API keys on; production
defaults for the key cache and the supervisor, as bench/gateway.py), sets up
three experiments (iris, wine, breast cancer, 3 folds), runs one iris search
(max_models 3) and trains its best result: the model the predictions use.
Then, for --minutes, all at once, from one client process plus a probe
process:

  uploads     every --upload-every s, alternately a small CSV (iris with
              jittered values, about 4 KB; it becomes a new experiment that
              runs are started on) and a ~1 MB generated CSV (bench/csvgen's
              mixed columns), each file's bytes different (storage
              deduplicates); each 1 MB dataset is deleted at the next 1 MB
              upload (DeleteDataset, blob removed)
  runs        every --run-every s a StartRun on the next experiment in turn,
              1 worker, a budget of --budget s (every 4th: max_models 3
              instead); every 5th run is stopped (StopRun) 3 s after its
              start; past the runner's 2 workers runs wait QUEUED
  watchers    --watchers WatchRun streams, each following the newest run to
              its end, then the next one
  predictions Predict of 5 iris rows on the trained model at --predict-rate/s
  exports     every --export-every s an ExportRunResults (CSV, XLSX, JSON
              lines in turn) of an ended run, read to its end
  probes      (own process, --probe-threads threads, a steady schedule)
              GetRun of an ended run at --getrun-rate/s in all (and the
              same of the echo baseline, see below), ListRuns
              (page 20) at 1/s and GetLeaderboard (page 10) at 2/s; GetRun's
              latency is kept per call

Every --sample-seconds, per service: RSS (/proc/PID/status VmRSS), open file
descriptors (/proc/PID/fd), threads; for the runner also its descendants (the
fork server, search and model workers): their count and RSS summed with the
runner's. Figures per service: at the start of the load, at the end of the
warm-up and at the end of the load, each the median of the samples of the
minute before that moment (the start: the first sample), and the change from
warm-up to end. Goal: within --tolerance (10 %) for each service's own
process (the runner's children come and go with its runs: shown, not
judged). GetRun p50 / p99 per minute of load, beside the baseline: the same
probe process calling a bare grpc.aio server (bench/gateway.py's echo) that
answers GetRun with the same Run's bytes, on the same schedule, so that a
minute the shared machine was busy shows in both; also the machine's busy
cores and load average per minute. Goal: no upward drift, judged as the last
minute's (p99 / echo p99) over the first minute's after the warm-up <=
--p99-drift (1.5; the raw p99 ratio is printed beside it). Exit 1 when a
goal is missed.

    .venv/bin/python -m bench.soak                        # 10 minutes, warm-up 2
    .venv/bin/python -m bench.soak --minutes 3 --warmup 1 # a quick look
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from automl.v1 import (  # noqa: E402
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    run_pb2,
)

SERVICES = ("storage", "notifier", "runner", "gateway")
# production defaults where tests/gateway shortens them (as bench/gateway.py), 2 runner workers
SUITE_ENV = {
    "AUTOML_API_KEY_CACHE_SECONDS": "5",
    "AUTOML_SUPERVISOR_INTERVAL_SECONDS": "1",
    "AUTOML_RUNNER_HEARTBEAT_SECONDS": "5",
    "AUTOML_RUNNER_LOST_SECONDS": "30",
    "AUTOML_RUNNER_MAX_WORKERS": "2",
}
PASSED_ENV = ("AUTOML_LOG_LEVEL",)
TERMINAL = {
    common_pb2.RUN_STATE_SUCCEEDED,
    common_pb2.RUN_STATE_STOPPED,
    common_pb2.RUN_STATE_FAILED,
    common_pb2.RUN_STATE_CANCELLED,
}
FORMATS = (run_pb2.EXPORT_FORMAT_CSV, run_pb2.EXPORT_FORMAT_XLSX, run_pb2.EXPORT_FORMAT_JSON)


# ---------------------------------------------------------------- /proc


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (kB) and Threads of a process."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def descendants(pid: int) -> list[int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss: dict[str, float]  # MB
    fds: dict[str, int]
    threads: dict[str, int]
    runner_children: int
    runner_total_rss: float  # MB, the runner and its descendants
    cpu: dict[str, float]  # CPU seconds of each service so far
    machine: tuple[float, float]  # (busy, total) CPU seconds of the machine so far
    loadavg: float  # 1-minute load average


def sample(pids: dict[str, int], t: float) -> Sample:
    rss, fds, threads = {}, {}, {}
    for name, pid in pids.items():
        status = proc_status(pid)
        rss[name] = status["VmRSS"] / 1024
        threads[name] = status["Threads"]
        fds[name] = open_fds(pid)
    kids, total = descendants(pids["runner"]), rss["runner"]
    alive = 0
    for kid in kids:
        try:
            total += proc_status(kid)["VmRSS"] / 1024
            alive += 1
        except (OSError, KeyError):
            pass
    from bench.cpu import cpu_seconds, machine_busy

    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    loadavg = float(Path("/proc/loadavg").read_text().split()[0])
    return Sample(t, rss, fds, threads, alive, total, cpu, machine_busy(), loadavg)


# ---------------------------------------------------------------- data


def iris_frame() -> pd.DataFrame:
    import sklearn.datasets

    return sklearn.datasets.load_iris(as_frame=True).frame


def to_csv(frame: pd.DataFrame) -> bytes:
    out = io.StringIO()
    frame.to_csv(out, index=False)
    return out.getvalue().encode()


def small_csv(seed: int) -> bytes:
    """Iris with every feature jittered: a different file each seed, same task."""
    frame = iris_frame()
    rng = np.random.default_rng(seed)
    features = frame.columns[:-1]
    frame[features] = (frame[features] + rng.normal(0, 0.02, (len(frame), len(features)))).round(3)
    return to_csv(frame)


def mb_csv(seed: int, size: int = 1 << 20) -> bytes:
    """About `size` bytes of bench/csvgen's mixed columns."""
    from bench.csvgen import block

    data = to_csv(block(np.random.default_rng(seed), seed * 100_000))
    cut = data.rfind(b"\n", 0, size)
    return data[: cut + 1]


def predict_csv() -> bytes:
    return to_csv(iris_frame().drop(columns=["target"]).iloc[::30])  # 5 rows


# ---------------------------------------------------------------- the client


class Api:
    """The public API as tenant alpha, one channel."""

    def __init__(self, target: str, key: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = automl_service_pb2_grpc.AutoMLStub(self.channel)
        self.md = [("authorization", f"Bearer {key}")]

    def __call__(self, method: str, request: object, timeout: float = 60) -> object:
        return getattr(self.stub, method)(request, metadata=self.md, timeout=timeout)

    def upload(self, data: bytes, name: str) -> dataset_pb2.Dataset:
        def requests() -> Iterator[dataset_pb2.UploadDatasetRequest]:
            yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name=name))
            for start in range(0, len(data), 256 * 1024):
                yield dataset_pb2.UploadDatasetRequest(chunk=data[start : start + 256 * 1024])

        return self.stub.UploadDataset(requests(), metadata=self.md, timeout=120)

    def experiment(self, data: bytes, name: str, target: str = "target") -> experiment_pb2.Experiment:
        dataset = self.upload(data, name)
        experiment = experiment_pb2.Experiment(
            display_name=name, dataset=dataset.name, target_column=target, cv_folds=3
        )
        return self("CreateExperiment", experiment_pb2.CreateExperimentRequest(experiment=experiment))

    def wait_end(self, name: str, timeout: float = 300) -> run_pb2.Run:
        deadline = time.monotonic() + timeout
        while (run := self("GetRun", run_pb2.GetRunRequest(name=name))).state not in TERMINAL:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} still {common_pb2.RunState.Name(run.state)} after {timeout} s")
            time.sleep(0.5)
        return run

    def close(self) -> None:
        self.channel.close()


# ---------------------------------------------------------------- the load


@dataclass
class Load:
    """What the load threads share and count."""

    api: Api
    args: argparse.Namespace
    t0: float
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    experiments: list[str] = field(default_factory=list)
    runs: list[tuple[float, str]] = field(default_factory=list)  # (started at, name)
    counts: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # (what, status code) -> n
    predict_ms: list[float] = field(default_factory=list)
    export_bytes: Counter = field(default_factory=Counter)
    calls: list[grpc.Call] = field(default_factory=list)  # open watch streams, cancelled at the end
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (s since t0, what ended then), for --json

    def error(self, what: str, exc: Exception) -> None:
        code = exc.code().name if isinstance(exc, grpc.RpcError) else type(exc).__name__
        with self.lock:
            self.errors[(what, code)] += 1
            first = self.errors[(what, code)] == 1
        if first:
            detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
            print(f"  [{time.time() - self.t0:6.1f} s] {what}: {code} {detail[:300]}", flush=True)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n
            if what not in ("watch events", "watch streams ended"):
                self.timeline.append((round(time.time() - self.t0, 2), what))

    def ticks(self, period: float, offset: float = 0.0) -> Iterator[int]:
        """A steady schedule: yields 0, 1, ... every `period` s until stop."""
        k = 0
        while True:
            due = self.t0 + offset + k * period
            if self.stop.wait(max(0.0, due - time.time())):
                return
            yield k
            k += 1


def uploader(load: Load) -> None:
    pending_delete: str | None = None
    for k in load.ticks(load.args.upload_every, 1.0):
        try:
            if k % 2 == 0:
                ex = load.api.experiment(small_csv(1000 + k), f"soak small {k}")
                with load.lock:
                    load.experiments.append(ex.name)
                load.count("upload small")
            else:
                dataset = load.api.upload(mb_csv(k), f"soak 1MB {k}")
                load.count("upload 1 MB")
                if pending_delete:
                    load.api("DeleteDataset", dataset_pb2.DeleteDatasetRequest(name=pending_delete, force=True))
                    load.count("delete 1 MB")
                pending_delete = dataset.name
        except Exception as exc:  # noqa: BLE001
            load.error("upload", exc)


def starter(load: Load) -> None:
    for k in load.ticks(load.args.run_every, 0.5):
        with load.lock:
            experiment = load.experiments[k % len(load.experiments)]
        if k % 4 == 3:
            conditions = common_pb2.StopConditions(max_models=3)
        else:
            conditions = common_pb2.StopConditions()
            conditions.max_duration.FromNanoseconds(int(load.args.budget * 1e9))
        try:
            run = load.api(
                "StartRun",
                run_pb2.StartRunRequest(experiment=experiment, stop_conditions=conditions, parallel_workers=1),
            )
        except Exception as exc:  # noqa: BLE001
            load.error("StartRun", exc)
            continue
        load.count("runs started")
        load.count(f"runs started {common_pb2.RunState.Name(run.state)}")
        with load.lock:
            load.runs.append((time.time(), run.name))
        if k % 5 == 4:

            def stop_it(name: str = run.name) -> None:
                try:
                    load.api("StopRun", run_pb2.StopRunRequest(name=name))
                    load.count("StopRun")
                except Exception as exc:  # noqa: BLE001
                    load.error("StopRun", exc)

            timer = threading.Timer(3.0, stop_it)
            timer.daemon = True
            timer.start()


def watcher(load: Load, api: Api, i: int) -> None:
    seen: set[str] = set()
    while not load.stop.is_set():
        with load.lock:
            fresh = [name for _, name in reversed(load.runs) if name not in seen]
        if not fresh:
            load.stop.wait(1.0)
            continue
        name = fresh[0]
        seen.add(name)
        call = api.stub.WatchRun(event_pb2.WatchRunRequest(name=name), metadata=api.md, timeout=600)
        with load.lock:
            load.calls.append(call)
        events = 0
        try:
            for message in call:
                if message.WhichOneof("content") == "batch":
                    events += len(message.batch.events)
            load.count("watch streams ended")
        except grpc.RpcError as exc:
            if not (load.stop.is_set() and exc.code() == grpc.StatusCode.CANCELLED):
                load.error("WatchRun", exc)
        finally:
            load.count("watch events", events)
            with load.lock:
                load.calls.remove(call)
        load.stop.wait(0.5)


def predictor(load: Load, model: str) -> None:
    request = model_pb2.PredictRequest(name=model, csv=predict_csv())
    for _ in load.ticks(1.0 / load.args.predict_rate, 0.25):
        start = time.perf_counter()
        try:
            answer = load.api("Predict", request, timeout=30)
            assert len(answer.predictions) == 5, answer
        except Exception as exc:  # noqa: BLE001
            load.error("Predict", exc)
            continue
        with load.lock:
            load.predict_ms.append((time.perf_counter() - start) * 1000)
        load.count("predictions")


def exporter(load: Load, fallback: str) -> None:
    checked: dict[str, bool] = {}
    for k in load.ticks(load.args.export_every, 2.0):
        with load.lock:
            candidates = [name for started, name in reversed(load.runs) if time.time() - started > 20]
        run = fallback
        for name in candidates[:10]:
            if name not in checked:
                try:
                    checked[name] = load.api("GetRun", run_pb2.GetRunRequest(name=name)).state in TERMINAL
                except Exception as exc:  # noqa: BLE001
                    load.error("GetRun (exporter)", exc)
                    continue
            if checked[name]:
                run = name
                break
        fmt = FORMATS[k % len(FORMATS)]
        try:
            size = 0
            for message in load.api.stub.ExportRunResults(
                run_pb2.ExportRunResultsRequest(run=run, format=fmt), metadata=load.api.md, timeout=120
            ):
                size += len(message.chunk)
            load.count(f"export {run_pb2.ExportFormat.Name(fmt)}")
            with load.lock:
                load.export_bytes[run_pb2.ExportFormat.Name(fmt)] += size
        except Exception as exc:  # noqa: BLE001
            load.error("ExportRunResults", exc)


# ---------------------------------------------------------------- probes (own process)


def _probe(target: str, echo: str, key: str, run: str, t0: float, seconds: float, args: dict, out) -> None:
    api = Api(target, key)
    bare = Api(echo, key)  # the baseline: a bare grpc.aio server answering GetRun with the same Run's bytes
    stop_at = t0 + seconds
    lock = threading.Lock()
    getrun: list[tuple[float, float]] = []
    echoed: list[tuple[float, float]] = []
    other: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    threads = args["threads"]

    def loop(method: str, request: object, rate: float, offset: float, into, api: Api = api) -> None:
        period = 1.0 / rate
        k = 0
        while True:
            due = t0 + offset + k * period
            k += 1
            if due >= stop_at:
                return
            now = time.time()
            if due > now:
                time.sleep(due - now)
            elif now - due > 1.0:  # fell behind by more than a second: skip, do not burst
                continue
            start = time.perf_counter()
            try:
                api(method, request, timeout=30)
            except grpc.RpcError as exc:
                with lock:
                    errors[(method if api is not bare else f"{method} (echo)", exc.code().name)] += 1
                continue
            ms = (time.perf_counter() - start) * 1000
            with lock:
                into(ms, due - t0)

    work = []
    for i in range(threads):  # GetRun spread over the threads, offset within the period
        rate = args["getrun_rate"] / threads
        work.append(
            (
                "GetRun",
                run_pb2.GetRunRequest(name=run),
                rate,
                i / args["getrun_rate"],
                lambda ms, t: getrun.append((t, ms)),
            )
        )
    for i in range(threads):  # the baseline on the same schedule, half a period later
        rate = args["getrun_rate"] / threads
        work.append(
            (
                "GetRun",
                run_pb2.GetRunRequest(name=run),
                rate,
                (i + 0.5) / args["getrun_rate"],
                lambda ms, t: echoed.append((t, ms)),
                bare,
            )
        )
    work.append(
        (
            "ListRuns",
            run_pb2.ListRunsRequest(page_size=20),
            1.0,
            0.37,
            lambda ms, t: other["ListRuns"].append(ms),
        )
    )
    work.append(
        (
            "GetLeaderboard",
            run_pb2.GetLeaderboardRequest(run=run, page_size=10),
            2.0,
            0.11,
            lambda ms, t: other["GetLeaderboard"].append(ms),
        )
    )
    pool = [threading.Thread(target=loop, args=w, daemon=True) for w in work]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    api.close()
    bare.close()
    out.put({"getrun": getrun, "echo": echoed, "other": dict(other), "errors": dict(errors)})


# ---------------------------------------------------------------- figures


def pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def window(samples: list[Sample], end: float, width: float) -> list[Sample]:
    chosen = [s for s in samples if end - width <= s.t <= end]
    return chosen or [min(samples, key=lambda s: abs(s.t - end))]


def med(samples: list[Sample], get) -> float:
    return statistics.median(get(s) for s in samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes of warm-up within the load")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--probe-threads", type=int, default=3)
    parser.add_argument("--getrun-rate", type=float, default=20.0, help="GetRun calls per second, all threads")
    parser.add_argument("--predict-rate", type=float, default=2.0, help="Predict calls per second")
    parser.add_argument("--run-every", type=float, default=12.0, help="seconds between StartRun calls")
    parser.add_argument("--budget", type=float, default=6.0, help="max_duration of the budgeted runs, seconds")
    parser.add_argument("--upload-every", type=float, default=20.0, help="seconds between uploads")
    parser.add_argument("--export-every", type=float, default=15.0, help="seconds between exports")
    parser.add_argument("--tolerance", type=float, default=0.10, help="allowed change of RSS and fds after warm-up")
    parser.add_argument("--p99-drift", type=float, default=1.5, help="allowed last / first-after-warm-up p99")
    parser.add_argument("--json", type=Path, help="write the samples and figures here")
    parser.add_argument("--keep", type=Path, help="keep the suite's folder (logs, data) here")
    args = parser.parse_args()
    if args.warmup >= args.minutes:
        parser.error("--warmup must be shorter than --minutes")

    from tests.gateway.conftest import start_gateway_suite, stop_gateway_suite

    with tempfile.TemporaryDirectory(prefix="automl-soak-") as tmp:
        folder = args.keep or Path(tmp) / "suite"
        folder.mkdir(parents=True, exist_ok=True)
        suite = start_gateway_suite(folder, SUITE_ENV | {k: os.environ[k] for k in PASSED_ENV if k in os.environ})
        try:
            return soak(suite, args)
        finally:
            stop_gateway_suite(suite)
            print(f"suite stopped; logs were in {folder}", flush=True)


def soak(suite, args: argparse.Namespace) -> int:
    import sklearn.datasets

    pids = {name: suite.stack.procs[name].pid for name in SERVICES}
    print(f"suite up: {', '.join(f'{k} pid {v}' for k, v in pids.items())}", flush=True)
    key = suite.api_key
    api = Api(suite.target, key)

    # ---- set-up: three experiments, a first run, its best result trained
    setup_start = time.time()
    experiments = [api.experiment(small_csv(0), "iris")]
    for name in ("wine", "breast_cancer"):
        frame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
        experiments.append(api.experiment(to_csv(frame), name))
    first = api(
        "StartRun",
        run_pb2.StartRunRequest(
            experiment=experiments[0].name, stop_conditions=common_pb2.StopConditions(max_models=3), parallel_workers=2
        ),
    )
    first = api.wait_end(first.name)
    model = api("TrainModel", model_pb2.TrainModelRequest(model_result=first.best_model_result))
    while model.state == model_pb2.TrainedModel.STATE_TRAINING:
        time.sleep(0.5)
        model = api("GetTrainedModel", model_pb2.GetTrainedModelRequest(name=model.name))
    assert model.state == model_pb2.TrainedModel.STATE_READY, model
    api("Predict", model_pb2.PredictRequest(name=model.name, csv=predict_csv()))  # loaded in its worker
    print(
        f"set-up in {time.time() - setup_start:.1f} s: run {first.name} "
        f"({first.models_evaluated} models), model {model.name}",
        flush=True,
    )

    # ---- the load
    seconds, warmup = args.minutes * 60, args.warmup * 60
    from bench.gateway import _echo_server
    from tests.ports import free_port

    port = free_port()
    echo = mp.get_context("spawn").Process(
        target=_echo_server, args=(port, {"/automl.v1.AutoML/GetRun": first.SerializeToString()}), daemon=True
    )
    echo.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
    t0 = time.time() + 1.0
    load = Load(api, args, t0, experiments=[e.name for e in experiments])
    out = mp.get_context("spawn").Queue()
    probe = mp.get_context("spawn").Process(
        target=_probe,
        args=(
            suite.target,
            f"127.0.0.1:{port}",
            key,
            first.name,
            t0,
            seconds,
            {"threads": args.probe_threads, "getrun_rate": args.getrun_rate},
            out,
        ),
        daemon=True,
    )
    probe.start()
    watch_api = Api(suite.target, key)  # the watchers' streams share one connection of their own
    threads = [
        threading.Thread(target=uploader, args=(load,), name="uploader"),
        threading.Thread(target=starter, args=(load,), name="starter"),
        threading.Thread(target=predictor, args=(load, model.name), name="predictor"),
        threading.Thread(target=exporter, args=(load, first.name), name="exporter"),
        *(
            threading.Thread(target=watcher, args=(load, watch_api, i), name=f"watcher{i}")
            for i in range(args.watchers)
        ),
    ]
    for thread in threads:
        thread.daemon = True
        thread.start()
    print(
        f"load for {args.minutes:g} min (warm-up {args.warmup:g} min): uploads every {args.upload_every:g} s, "
        f"a run every {args.run_every:g} s (budget {args.budget:g} s, 1 worker), {args.watchers} watchers, "
        f"Predict {args.predict_rate:g}/s, an export every {args.export_every:g} s, GetRun "
        f"{args.getrun_rate:g}/s + ListRuns 1/s + GetLeaderboard 2/s from {args.probe_threads + 2} probe threads",
        flush=True,
    )

    samples: list[Sample] = []
    time.sleep(max(0.0, t0 - time.time()))
    k = 0
    while True:
        due = t0 + k * args.sample_seconds
        if due > t0 + seconds + 1e-6:
            break
        time.sleep(max(0.0, due - time.time()))
        samples.append(sample(pids, time.time() - t0))
        s = samples[-1]
        if k % max(1, round(60 / args.sample_seconds)) == 0:
            with load.lock:
                counts = dict(load.counts)
            print(
                f"  [{s.t:6.1f} s] RSS MB "
                + " ".join(f"{n} {s.rss[n]:.0f}" for n in SERVICES)
                + f" (runner + {s.runner_children} children {s.runner_total_rss:.0f}); fds "
                + " ".join(f"{n} {s.fds[n]}" for n in SERVICES)
                + f"; runs {counts.get('runs started', 0)}, predictions {counts.get('predictions', 0)}",
                flush=True,
            )
        k += 1

    # ---- stop the load
    load.stop.set()
    with load.lock:
        open_calls = list(load.calls)
    for call in open_calls:
        call.cancel()
    for thread in threads:
        thread.join(timeout=130)
    stuck = [t.name for t in threads if t.is_alive()]
    probed = out.get(timeout=120)
    probe.join(timeout=30)
    echo.terminate()
    echo.join(timeout=10)
    with load.lock:
        runs = [name for _, name in load.runs]
    # the runs still under way end on their own (budgets of seconds; the queue drains)
    states: Counter = Counter()
    drain_deadline = time.monotonic() + 300
    for name in runs:
        try:
            run = api.wait_end(name, timeout=max(1.0, drain_deadline - time.monotonic()))
            states[common_pb2.RunState.Name(run.state)] += 1
        except Exception as exc:  # noqa: BLE001
            states[f"not ended: {exc}"[:60]] += 1
    time.sleep(5)
    quiet = sample(pids, time.time() - t0)
    api.close()
    watch_api.close()

    return report(args, samples, quiet, load, probed, states, stuck, seconds, warmup)


def report(args, samples, quiet, load, probed, states, stuck, seconds, warmup) -> int:
    lines: list[str] = []
    failed: list[str] = []

    def say(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)

    start = window(samples, 0.0, 0.0)
    at_warm = window(samples, warmup, 60.0)
    at_end = window(samples, seconds, 60.0)
    after = [s for s in samples if s.t >= warmup]
    say()
    say(
        f"memory and descriptors (start: first sample; warm-up end ({warmup / 60:g} min) and end "
        f"({seconds / 60:g} min): median of the minute before; {len(samples)} samples every "
        f"{args.sample_seconds:g} s; quiet: 5 s after the load and its runs ended)"
    )
    say("| process | figure | start | warm-up end | peak after warm-up | end | change | quiet |")
    say("|---|---|---|---|---|---|---|---|")
    figures: dict[str, dict[str, float]] = {}
    rows = []
    for name in SERVICES:
        rows.append((name, "RSS MB", lambda s, n=name: s.rss[n], True))
        rows.append((name, "open fds", lambda s, n=name: s.fds[n], True))
        rows.append((name, "threads", lambda s, n=name: s.threads[n], False))
    rows.append(("runner + children", "RSS MB", lambda s: s.runner_total_rss, False))
    rows.append(("runner children", "count", lambda s: s.runner_children, False))
    for name, what, get, judged in rows:
        a, b = med(at_warm, get), med(at_end, get)
        change = (b - a) / a if a else 0.0
        peak = max(get(s) for s in after)
        fmt = "{:.1f}" if what == "RSS MB" else "{:.0f}"
        verdict = ""
        if judged:
            ok = abs(change) <= args.tolerance
            verdict = " ok" if ok else " **over**"
            if not ok:
                failed.append(f"{name} {what} changed {change * 100:+.1f}% after warm-up")
        figures[f"{name} {what}"] = {"start": get(start[0]), "warm": a, "peak": peak, "end": b, "quiet": get(quiet)}
        say(
            f"| {name} | {what} | {fmt.format(get(start[0]))} | {fmt.format(a)} | {fmt.format(peak)} | "
            f"{fmt.format(b)} | {change * 100:+.1f}%{verdict} | {fmt.format(get(quiet))} |"
        )

    # GetRun per minute, beside the baseline and the machine
    getrun = np.array(probed["getrun"]) if probed["getrun"] else np.zeros((0, 2))
    echoed = np.array(probed["echo"]) if probed["echo"] else np.zeros((0, 2))
    say()
    say(
        "GetRun per minute of load, steady schedule: through the gateway (an ended run) and, the baseline, "
        "a bare grpc.aio server answering the same Run's bytes from the same probe process; the machine's busy "
        "cores (of 2) and the suite's 4 processes' share; 1-minute load average at the minute's end"
    )
    say(
        "| minute | calls | p50 ms | p99 ms | max ms | echo p50 ms | echo p99 ms | p99 / echo p99 | busy cores "
        "| suite cores | load avg |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|---|")

    def at(t: float) -> Sample:
        return min(samples, key=lambda s: abs(s.t - t))

    per_minute: list[dict] = []
    for minute in range(int(np.ceil(seconds / 60))):
        lo, hi = minute * 60, (minute + 1) * 60
        ms = getrun[(getrun[:, 0] >= lo) & (getrun[:, 0] < hi), 1]
        em = echoed[(echoed[:, 0] >= lo) & (echoed[:, 0] < hi), 1]
        a, b = at(lo), at(hi)
        busy = (b.machine[0] - a.machine[0]) / max(b.machine[1] - a.machine[1], 1e-9) * (os.cpu_count() or 1)
        suite_cores = sum(b.cpu[n] - a.cpu[n] for n in SERVICES) / max(b.t - a.t, 1e-9)
        row = {
            "minute": minute + 1,
            "calls": len(ms),
            "p50": pct(ms, 50),
            "p99": pct(ms, 99),
            "max": float(ms.max()) if len(ms) else float("nan"),
            "echo_p50": pct(em, 50),
            "echo_p99": pct(em, 99),
            "busy": busy,
            "suite": suite_cores,
            "load": b.loadavg,
        }
        row["ratio"] = row["p99"] / row["echo_p99"]
        per_minute.append(row)
        mark = " (warm-up)" if hi <= warmup else ""
        say(
            f"| {minute + 1}{mark} | {len(ms)} | {row['p50']:.1f} | {row['p99']:.1f} | {row['max']:.1f} | "
            f"{row['echo_p50']:.1f} | {row['echo_p99']:.1f} | {row['ratio']:.2f} | {busy:.2f} | {suite_cores:.2f} | "
            f"{b.loadavg:.1f} |"
        )
    post = [m for m in per_minute if (m["minute"] - 1) * 60 >= warmup and m["calls"]]
    drift = raw_drift = float("nan")
    if post:
        first_after, last = post[0], post[-1]
        raw_drift = last["p99"] / first_after["p99"]
        drift = last["ratio"] / first_after["ratio"]
        ok = drift <= args.p99_drift
        say(
            f"GetRun p99, last minute / first minute after warm-up: {last['p99']:.1f} / {first_after['p99']:.1f} ms = "
            f"{raw_drift:.2f} (the machine's share included; baseline's: {last['echo_p99']:.1f} / "
            f"{first_after['echo_p99']:.1f} ms = {last['echo_p99'] / first_after['echo_p99']:.2f})"
        )
        say(
            f"same, each over the baseline's p99 of its minute: {last['ratio']:.2f} / {first_after['ratio']:.2f} = "
            f"{drift:.2f} (goal <= {args.p99_drift:g}: {'met' if ok else 'MISSED'})"
        )
        if not ok:
            failed.append(
                f"GetRun p99 over the baseline's drifted up: minute {last['minute']} / minute "
                f"{first_after['minute']} = {drift:.2f}"
            )
        if len(post) >= 3:
            xs = [m["minute"] for m in post]
            slope = np.polyfit(xs, [m["p99"] for m in post], 1)[0]
            slope_ratio = np.polyfit(xs, [m["ratio"] for m in post], 1)[0]
            slope_p50 = np.polyfit(xs, [m["p50"] for m in post], 1)[0]
            say(
                f"trends after warm-up (least squares over {len(post)} minutes): p99 {slope:+.2f} ms per minute, "
                f"p99 / echo p99 {slope_ratio:+.3f} per minute, p50 {slope_p50:+.2f} ms per minute"
            )
    all_ms = getrun[:, 1] if len(getrun) else np.zeros(0)
    all_echo = echoed[:, 1] if len(echoed) else np.zeros(0)
    say(
        f"GetRun over the whole load: {len(all_ms)} calls, p50 {pct(all_ms, 50):.1f} ms, p99 {pct(all_ms, 99):.1f} ms; "
        f"baseline {len(all_echo)} calls, p50 {pct(all_echo, 50):.1f} ms, p99 {pct(all_echo, 99):.1f} ms"
    )
    for method, ms in probed["other"].items():
        say(f"{method}: {len(ms)} calls, p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms")

    # the load itself
    say()
    counts = load.counts
    say(
        "load done: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
        + f"; Predict p50 {pct(load.predict_ms, 50):.1f} ms, p99 {pct(load.predict_ms, 99):.1f} ms"
    )
    say("export bytes: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(load.export_bytes.items())))
    say("runs at the end: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    errors = Counter(load.errors) + Counter(probed["errors"])
    say("errors: " + (", ".join(f"{w} {c} x{n}" for (w, c), n in sorted(errors.items())) or "none"))
    if stuck:
        say(f"threads that did not stop: {', '.join(stuck)}")

    say()
    if failed:
        say("goals MISSED: " + "; ".join(failed))
    else:
        say(
            f"goals met: every service's RSS and fds within {args.tolerance * 100:g}% after warm-up; "
            "GetRun p99 over the baseline's not drifting up"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "samples": [s.__dict__ for s in samples],
                    "quiet": quiet.__dict__,
                    "figures": figures,
                    "getrun_per_minute": per_minute,
                    "drift": drift,
                    "raw_drift": raw_drift,
                    "echo": probed["echo"],
                    "counts": dict(counts),
                    "errors": {f"{w} {c}": n for (w, c), n in errors.items()},
                    "failed": failed,
                    "getrun": probed["getrun"],
                    "timeline": load.timeline,
                },
                indent=1,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
