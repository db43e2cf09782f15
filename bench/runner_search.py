"""The runner's search: service overhead, parallel scaling, limit enforcement.

Starts storage, notifier and runner as real processes (SQLite and a blob
folder in a temporary directory) and runs real aikit searches through them.

    .venv/bin/python bench/runner_search.py overhead [--models 30] [--repeat 2]
    .venv/bin/python bench/runner_search.py scaling [--models 10] [--repeat 2]
    .venv/bin/python bench/runner_search.py dask [--models 40] [--repeat 2]
    .venv/bin/python bench/runner_search.py limits [--time-limit 5] [--budget 60]

overhead: the same seeded candidates (breast cancer, 5 folds), evaluated (a)
by a bare in-process loop of aikit's generator and cross-validation and (b)
through the runner end to end with one worker (storage, events, worker
process); the figure is the wall-time ratio b/a, goal <= 1.05. The candidate
lists of (a) and (b) are checked to be the same.

scaling: models per minute with 1 worker and with 2 workers (breast cancer,
5 folds, 40 candidates by default); goal >= 1.7x on 2 cores. aikit's first
eleven candidates are the same either way; past them the guided proposals
depend on the order results come back, so the two lists differ (the script
counts how many match) but are drawn from the same distribution. Few
candidates understate scaling: the last long candidate runs alone.

dask: the scaling search with candidates on a Dask LocalCluster of 2 worker
processes, against the local pool of 2 workers: models per minute.

limits: a run whose per-model limit is T s on a table where some candidates
need far longer: the longest candidate (the runner's own measure, from its
log) against T + the poll interval; and a run with a time budget of B s:
its wall time against B + the grace period.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automl.v1 import common_pb2 as c  # noqa: E402
from automl.v1 import run_pb2  # noqa: E402
from tests.runner.conftest import (  # noqa: E402
    Stack,
    seconds,
    sklearn_csv,
    start_stack,
    stop_stack,
    to_csv,
)
from tests.runner.test_search import slow_table  # noqa: E402

GRACE = 2.0


def stack(folder: Path, workers: int) -> Stack:
    folder.mkdir(parents=True, exist_ok=True)
    return start_stack(
        folder,
        {"AUTOML_RUNNER_MAX_WORKERS": str(workers), "AUTOML_RUNNER_STOP_GRACE_SECONDS": str(GRACE)},
    )


def service_run(s: Stack, data: bytes, target: str, workers: int, **conditions: object) -> tuple[float, list[str]]:
    """Wall time from ExecuteRun to the terminal state, and the job ids in order."""
    experiment = s.experiment(data, target, seed=1, cv_folds=5)
    run = s.new_run(experiment, workers=workers, **conditions)
    started = time.perf_counter()
    s.execute(run)
    s.wait_end(run, timeout=3600)
    wall = time.perf_counter() - started
    return wall, [r.job_id for r in sorted(s.results(run), key=lambda r: r.index)]


def bare_loop(models: int, folder: Path) -> tuple[float, list[str]]:
    """aikit's generator and cross-validation in this process, one candidate
    after the other, nothing stored but aikit's own result files."""
    import io

    import pandas as pd

    from automl.v1 import dataset_pb2, experiment_pb2
    from services.runner import problem, scoring
    from services.runner.candidates import Candidates
    from services.runner.worker import Evaluator

    frame = pd.read_csv(io.BytesIO(sklearn_csv("breast_cancer")))
    exp = experiment_pb2.Experiment(
        target_column="target",
        resolved_task=c.TASK_CLASSIFICATION,
        primary_metric=c.METRIC_ACCURACY,
        cv_folds=5,
        seed=1,
    )
    started = time.perf_counter()
    data = problem.prepare(frame, dataset_pb2.Dataset(), exp)
    scorers = [s.name for s in scoring.scorers(data.task, data.metric)]
    candidates = Candidates(data.X, data.y, data.task, [], scorers, data.folds, data.seed, folder)
    evaluator = Evaluator(data.X, data.y, True, data.folds, data.random_state, scorers)
    ids = []
    for _ in range(models):
        candidate = candidates.next()
        try:
            rows = evaluator.evaluate(candidate.job_param).rows
        except Exception as exc:  # noqa: BLE001 - a failed candidate is a result here too
            candidates.record(candidate.job_id, None, repr(exc))
        else:
            candidates.record(candidate.job_id, rows)
        ids.append(candidate.job_id)
    return time.perf_counter() - started, ids


def overhead(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # as a worker: one core
    data = sklearn_csv("breast_cancer")
    with tempfile.TemporaryDirectory() as tmp:
        s = stack(Path(tmp) / "suite", 1)
        try:
            bare, served = [], []
            for i in range(args.repeat):
                wall_a, ids_a = bare_loop(args.models, Path(tmp) / f"bare{i}")
                wall_b, ids_b = service_run(s, data, "target", 1, max_models=args.models)
                same = sum(a == b for a, b in zip(ids_a, ids_b, strict=False))
                print(f"round {i + 1}: bare {wall_a:.1f} s, service {wall_b:.1f} s, same {same}/{len(ids_a)}")
                bare.append(wall_a)
                served.append(wall_b)
        finally:
            stop_stack(s)
    a, b = statistics.median(bare), statistics.median(served)
    print(f"overhead: {args.models} candidates, bare loop {a:.1f} s, through the runner {b:.1f} s, ratio {b / a:.3f}")


def scaling(args: argparse.Namespace) -> None:
    data = sklearn_csv("breast_cancer")
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        s = stack(Path(tmp) / "suite", 2)
        try:
            for i in range(args.repeat):
                ids = {}
                for workers in (1, 2):
                    wall, ids[workers] = service_run(s, data, "target", workers, max_models=args.models)
                    rates[workers].append(args.models / wall * 60)
                    print(f"round {i + 1}: {workers} worker(s) {wall:.1f} s, {rates[workers][-1]:.1f} models/min")
                same = sum(a == b for a, b in zip(ids[1], ids[2], strict=False))
                print(f"  same candidates in the same order: {same}/{args.models}")
        finally:
            stop_stack(s)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"scaling: {one:.1f} models/min with 1 worker, {two:.1f} with 2, ratio {two / one:.2f}")


def dask(args: argparse.Namespace) -> None:
    """Models per minute with candidates on a Dask LocalCluster of 2 worker
    processes against the local pool of 2 workers, same search."""
    from distributed import LocalCluster

    data = sklearn_csv("breast_cancer")
    rates: dict[str, list[float]] = {"local": [], "dask": []}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, host="127.0.0.1")
        local = stack(Path(tmp) / "local", 2)
        (Path(tmp) / "dask").mkdir()
        on_dask = start_stack(
            Path(tmp) / "dask", {"AUTOML_RUNNER_MAX_WORKERS": "2", "AUTOML_DASK_SCHEDULER": cluster.scheduler_address}
        )
        try:
            for i in range(args.repeat):
                for name, s in (("local", local), ("dask", on_dask)):
                    wall, _ = service_run(s, data, "target", 2, max_models=args.models)
                    rates[name].append(args.models / wall * 60)
                    print(f"round {i + 1}: {name} {wall:.1f} s, {rates[name][-1]:.1f} models/min")
        finally:
            stop_stack(local)
            stop_stack(on_dask)
            cluster.close()
    a, b = statistics.median(rates["local"]), statistics.median(rates["dask"])
    print(f"dask: {b:.1f} models/min on a LocalCluster of 2, {a:.1f} on the local pool of 2, ratio {b / a:.2f}")


def limits(args: argparse.Namespace) -> None:
    data = to_csv(slow_table(20000))
    with tempfile.TemporaryDirectory() as tmp:
        s = stack(Path(tmp) / "suite", 2)
        try:
            experiment = s.experiment(data, "label", seed=2, cv_folds=5)
            run = s.new_run(
                experiment, workers=2, max_models=args.models, per_model_time_limit=seconds(args.time_limit)
            )
            s.execute(run)
            s.wait_end(run, timeout=3600)
            outcomes = [r.outcome for r in s.results(run)]
            durations = [float(m) for m in re.findall(r'msg="candidate done".* seconds=([0-9.]+)', s.log("runner"))]
            longest = max(durations)
            timed_out = outcomes.count(run_pb2.ModelResult.OUTCOME_TIMED_OUT)
            print(
                f"per-model limit {args.time_limit:g} s: {len(durations)} candidates, {timed_out} timed out, "
                f"longest {longest:.2f} s, ratio to the limit {longest / args.time_limit:.3f}"
            )
            budget = s.new_run(experiment, workers=2, max_duration=seconds(args.budget))
            started = time.perf_counter()
            s.execute(budget)
            end = s.wait_end(budget, timeout=3600)
            wall = time.perf_counter() - started
            ran = end.end_time.ToDatetime() - end.start_time.ToDatetime()
            print(
                f"time budget {args.budget:g} s (+ grace {GRACE:g} s): ended {c.StopReason.Name(end.stop_reason)} "
                f"after {wall:.1f} s wall ({ran.total_seconds():.1f} s RUNNING), ratio to the budget "
                f"{wall / args.budget:.3f}, to budget + grace {wall / (args.budget + GRACE):.3f}"
            )
        finally:
            stop_stack(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name, models in (("overhead", 30), ("scaling", 40), ("dask", 40)):
        command = sub.add_parser(name)
        command.add_argument("--models", type=int, default=models)
        command.add_argument("--repeat", type=int, default=2)
    li = sub.add_parser("limits")
    li.add_argument("--time-limit", type=float, default=5.0)
    li.add_argument("--budget", type=float, default=60.0)
    li.add_argument("--models", type=int, default=12)
    args = parser.parse_args()
    {"overhead": overhead, "scaling": scaling, "dask": dask, "limits": limits}[args.what](args)


if __name__ == "__main__":
    main()
