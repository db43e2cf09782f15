"""ExportRunResults of a run with many models: time and the gateway's memory.

Starts the four services as real processes, writes N synthetic results (with
aikit-like descriptions and 5 folds each) into one run through storage, then
exports the run as CSV, XLSX and JSON lines through the gateway. Baseline in
the same run: reading the same results page by page (ListModelResults, FULL
view) through the gateway, which every export does first. Prints seconds,
file sizes, and the gateway's resident memory before and at its peak
(sampled every 20 ms from /proc).

    .venv/bin/python -m bench.exports [--models 10000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from automl.v1 import common_pb2 as c
from automl.v1 import run_pb2, storage_service_pb2
from automl_client import Client
from tests.gateway.conftest import start_gateway_suite, stop_gateway_suite
from tests.gateway.test_supervisor import Ghost
from tests.runner.conftest import sklearn_csv


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """The highest RSS of a process while the context is open."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> Peak:
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


def model_json(i: int) -> str:
    params = [["n_estimators", 50 + i % 200], ["learning_rate", round(0.01 + (i % 30) / 100, 3)], ["max_depth", i % 9]]
    model = {"__type__": "__tuple__", "__items__": ["LGBMClassifier", {"__type__": "__dict__", "__items__": params}]}
    return json.dumps(model)


def fill(ghost: Ghost, models: int) -> None:
    for start in range(0, models, 1000):
        batch = []
        for i in range(start, min(start + 1000, models)):
            score = 0.5 + (i * 7919 % 1000) / 2000
            result = run_pb2.ModelResult(
                index=i + 1,
                model_family="LGBMClassifier",
                pipeline_steps=["LGBMClassifier"],
                model_json=model_json(i),
                outcome=run_pb2.ModelResult.OUTCOME_SUCCEEDED,
                primary_score=score,
                metrics=[c.MetricSummary(metric=c.METRIC_ACCURACY, mean=score, std=0.01, train_mean=score + 0.02)],
                folds_run=5,
                fit_time_seconds=0.5,
            )
            for fold in range(5):
                result.folds.add(fold_nb=fold, values={"test_accuracy": score, "train_accuracy": score + 0.02})
            batch.append(result)
        ghost.storage.BatchCreateModelResults(
            storage_service_pb2.BatchCreateModelResultsRequest(run=ghost.run.name, model_results=batch),
            metadata=ghost.metadata,
            timeout=120,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="automl-bench-exports-") as tmp:
        folder = Path(tmp) / "suite"
        folder.mkdir()
        suite = start_gateway_suite(folder)
        try:
            client = suite.client()
            experiment = client.experiment(sklearn_csv("iris"), "target")
            ghost = Ghost(suite, experiment, max_models=args.models + 1)
            started = time.perf_counter()
            fill(ghost, args.models)
            print(f"{args.models} results written through storage in {time.perf_counter() - started:.1f} s")
            gateway = suite.stack.procs["gateway"].pid
            with Client(target=suite.target, api_key=suite.api_key, timeout=300) as api:
                idle = rss_mb(gateway)
                with Peak(gateway) as peak:
                    started = time.perf_counter()
                    count = sum(1 for _ in api.list_model_results(ghost.run.name, full=True))
                    baseline = time.perf_counter() - started
                print(f"gateway RSS before the exports: {idle:.0f} MB")
                print(f"{'what':<34} {'seconds':>8} {'x baseline':>10} {'MB':>8} {'gateway peak RSS MB':>20}")
                print(f"{'ListModelResults, FULL (baseline)':<34} {baseline:8.2f} {1:10.2f} {'':>8} {peak.peak:20.0f}")
                assert count == args.models
                for name, fmt in (("CSV", 1), ("XLSX", 2), ("JSON lines", 3)):
                    with Peak(gateway) as peak:
                        started = time.perf_counter()
                        path = api.export_run(ghost.run.name, fmt, Path(tmp) / f"export.{name}")
                        took = time.perf_counter() - started
                    size = path.stat().st_size / 1e6
                    print(f"{'export ' + name:<34} {took:8.2f} {took / baseline:10.2f} {size:8.1f} {peak.peak:20.0f}")
            ghost.close()
        finally:
            stop_gateway_suite(suite)


if __name__ == "__main__":
    main()
