"""The same searches with candidates evaluated on a Dask cluster: a
LocalCluster of two worker processes, the runner a real process talking to
its scheduler over TCP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from automl.v1 import common_pb2 as c
from automl.v1 import run_pb2, runner_service_pb2
from tests.runner.conftest import Stack, seconds, sklearn_csv, start_stack, stop_stack, to_csv
from tests.runner.test_search import failures, slow_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dask_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1")
    folder: Path = tmp_path_factory.mktemp("dask")
    running = start_stack(folder, {"AUTOML_DASK_SCHEDULER": cluster.scheduler_address})
    try:
        yield running
    finally:
        stop_stack(running)
        cluster.close()


def test_a_search_runs_on_the_cluster(dask_stack: Stack):
    status = dask_stack.runner.GetRunnerStatus(runner_service_pb2.GetRunnerStatusRequest(), timeout=10)
    assert status.executor.startswith("tcp://127.0.0.1:")
    run = dask_stack.new_run(dask_stack.experiment(sklearn_csv("breast_cancer"), "target"), workers=2, max_models=6)
    dask_stack.execute(run)
    end = dask_stack.wait_end(run)
    assert (end.state, end.models_evaluated) == (c.RUN_STATE_SUCCEEDED, 6 + 1)  # and the ensemble
    assert failures(dask_stack.results(run)) == []


def test_time_limits_and_stops_hold_on_the_cluster(dask_stack: Stack):
    experiment = dask_stack.experiment(to_csv(slow_table()), "label", allowed_model_families=["RandomForestClassifier"])
    limited = dask_stack.new_run(experiment, workers=2, max_models=2, per_model_time_limit=seconds(1))
    dask_stack.execute(limited)
    end = dask_stack.wait_end(limited, timeout=60)
    outcomes = {r.outcome for r in dask_stack.results(limited)}
    assert end.state == c.RUN_STATE_SUCCEEDED and run_pb2.ModelResult.OUTCOME_TIMED_OUT in outcomes

    stopped = dask_stack.new_run(experiment, workers=2, max_models=50)
    dask_stack.execute(stopped)
    deadline = time.monotonic() + 60
    while dask_stack.get(stopped).models_evaluated < 1 and time.monotonic() < deadline:  # STOPPED, not CANCELLED
        time.sleep(0.1)
    dask_stack.runner.StopExecution(
        runner_service_pb2.StopExecutionRequest(
            name=stopped.name, reason=c.STOP_REASON_USER, grace_period=seconds(0.5)
        ),
        timeout=30,
    )
    asked = time.monotonic()
    end = dask_stack.wait_end(stopped, timeout=60)
    assert end.state == c.RUN_STATE_STOPPED and time.monotonic() - asked < 10
    assert run_pb2.ModelResult.OUTCOME_INTERRUPTED in {r.outcome for r in dask_stack.results(stopped)}
