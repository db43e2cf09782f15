"""Storage, notifier and runner as real processes, and the calls a test makes
to set up and follow a run."""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from google.protobuf import duration_pb2

from automl.v1 import (
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    run_pb2,
    runner_service_pb2,
    runner_service_pb2_grpc,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from tests import internal
from tests.conftest import ROOT, spawn, suite_env, wait_serving

SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
RUNNER_ENV = {
    "AUTOML_RUNNER_MAX_WORKERS": "2",
    "AUTOML_RUNNER_HEARTBEAT_SECONDS": "1",
    "AUTOML_RUNNER_STOP_GRACE_SECONDS": "2",
}
TERMINAL = {
    common_pb2.RUN_STATE_SUCCEEDED,
    common_pb2.RUN_STATE_STOPPED,
    common_pb2.RUN_STATE_FAILED,
    common_pb2.RUN_STATE_CANCELLED,
}


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def to_csv(frame: pd.DataFrame) -> bytes:
    out = io.StringIO()
    frame.to_csv(out, index=False)
    return out.getvalue().encode()


def sklearn_csv(name: str) -> bytes:
    """A scikit-learn bundled dataset as CSV, the target in column "target"."""
    import sklearn.datasets

    frame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
    return to_csv(frame)


def mixed_table(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Numbers, categories, free text and missing values, with a learnable
    binary target, and column names LightGBM refuses."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(50, 15, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    words = np.array(["alpha", "beta", "gamma", "delta", "omega", "sigma"])
    text = [" ".join(rng.choice(words, 4)) for _ in range(rows)]
    score = amount / 10 + (colour == "red") * 3 + rng.normal(0, 1, rows)
    frame = pd.DataFrame(
        {
            "amount: eur": amount.round(2),
            "colour[main]": colour,
            "note": text,
            "ratio,x": rng.uniform(0, 1, rows).round(3),
            "label": np.where(score > np.median(score), "yes", "no"),
        }
    )
    frame.loc[rng.choice(rows, rows // 10, replace=False), "amount: eur"] = np.nan
    frame.loc[rng.choice(rows, rows // 10, replace=False), "colour[main]"] = np.nan
    return frame


def shared_csv(name: str) -> bytes:
    path = SHARED_DATASETS / name
    if not path.exists():
        pytest.skip(f"{path} not found: the shared datasets are only on the development machines")
    return path.read_bytes()


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.env[f'AUTOML_{name.upper()}_PORT']}"

    def start(self, name: str) -> None:
        log = self.logs / f"{name}.log"
        module, service = ("gateway", "automl.v1.AutoML") if name == "gateway" else (f"services.{name}", "")
        self.procs[name] = spawn(module, self.env, log)
        service = service or f"automl.v1.{name.capitalize()}"
        wait_serving(self.target(name), service, self.procs[name], timeout=60, log=log)

    def stop(self, name: str, kill: bool = False) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.kill() if kill else proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    @property
    def storage(self) -> storage_service_pb2_grpc.StorageStub:
        return storage_service_pb2_grpc.StorageStub(internal.channel(self.target("storage")))

    @property
    def runner(self) -> runner_service_pb2_grpc.RunnerStub:
        return runner_service_pb2_grpc.RunnerStub(internal.channel(self.target("runner")))

    # ------------------------------------------------------------- set-up

    def upload(self, data: bytes, name: str = "data") -> dataset_pb2.Dataset:
        requests = [dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name=name))]
        requests += [dataset_pb2.UploadDatasetRequest(chunk=data[i : i + 2**20]) for i in range(0, len(data), 2**20)]
        return self.storage.UploadDataset(iter(requests), timeout=60)

    def experiment(self, data: bytes, target: str, **fields: object) -> experiment_pb2.Experiment:
        dataset = self.upload(data)
        fields.setdefault("cv_folds", 3)
        return self.storage.CreateExperiment(
            experiment_pb2.CreateExperimentRequest(
                experiment=experiment_pb2.Experiment(dataset=dataset.name, target_column=target, **fields)
            ),
            timeout=30,
        )

    def new_run(self, experiment: experiment_pb2.Experiment, workers: int = 2, **conditions: object) -> run_pb2.Run:
        return self.storage.CreateRun(
            storage_service_pb2.CreateRunRequest(
                run=run_pb2.Run(
                    experiment=experiment.name,
                    stop_conditions=common_pb2.StopConditions(**conditions),
                    parallel_workers=workers,
                )
            ),
            timeout=30,
        )

    def execute(self, run: run_pb2.Run) -> run_pb2.Run:
        return self.runner.ExecuteRun(runner_service_pb2.ExecuteRunRequest(name=run.name), timeout=120)

    def get(self, run: run_pb2.Run) -> run_pb2.Run:
        return self.storage.GetRun(run_pb2.GetRunRequest(name=run.name), timeout=30)

    def wait_end(self, run: run_pb2.Run, timeout: float = 300) -> run_pb2.Run:
        deadline = time.monotonic() + timeout
        while True:
            current = self.get(run)
            if current.state in TERMINAL:
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"{run.name} still {common_pb2.RunState.Name(current.state)} after {timeout} s")
            time.sleep(0.2)

    def results(self, run: run_pb2.Run) -> list[run_pb2.ModelResult]:
        out: list[run_pb2.ModelResult] = []
        token = ""
        while True:
            page = self.storage.ListModelResults(
                run_pb2.ListModelResultsRequest(
                    run=run.name, page_size=1000, page_token=token, view=run_pb2.MODEL_RESULT_VIEW_FULL
                ),
                timeout=30,
            )
            out += page.model_results
            token = page.next_page_token
            if not token:
                return out

    def events(self, run: run_pb2.Run) -> list[event_pb2.Event]:
        return list(
            self.storage.ListEvents(
                storage_service_pb2.ListEventsRequest(run=run.name, page_size=10000), timeout=30
            ).events
        )

    def finished_events(self, run: run_pb2.Run, timeout: float = 10) -> list[event_pb2.Event]:
        """The run's events once its RUN_FINISHED is stored (or after `timeout`):
        the runner stores the final state, then publishes the event, so a run
        seen ended may not have it in its log yet."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(run)
            if (events and events[-1].HasField("run_finished")) or time.monotonic() > deadline:
                return events
            time.sleep(0.1)


def start_stack(folder: Path, extra: dict[str, str] | None = None) -> Stack:
    stack = Stack(suite_env(folder) | RUNNER_ENV | (extra or {}), folder)
    try:
        for name in ("storage", "notifier", "runner"):
            stack.start(name)
    except BaseException:
        stop_stack(stack)
        raise
    return stack


def stop_stack(stack: Stack) -> None:
    for name in ("gateway", "runner", "notifier", "storage"):
        if name in stack.procs:
            stack.stop(name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("runner"))
    try:
        yield running
    finally:
        stop_stack(running)
