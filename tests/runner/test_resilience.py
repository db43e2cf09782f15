"""What happens around a run: a runner killed mid-run, stops and endings
written by someone else, the memory guard, and the shared real datasets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from automl.v1 import common_pb2 as c
from automl.v1 import run_pb2, runner_service_pb2, runner_service_pb2_grpc, storage_service_pb2
from tests import internal
from tests.conftest import free_port, spawn, wait_serving
from tests.runner.conftest import Stack, shared_csv, sklearn_csv, start_stack, stop_stack, to_csv
from tests.runner.test_search import failures, kinds, slow_table


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path, {"AUTOML_RUNNER_WORKER_MEMORY_MB": "40"})
    try:
        yield running
    finally:
        stop_stack(running)


def wait_results(stack: Stack, run: run_pb2.Run, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(stack.results(run)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} results after {timeout} s"
        time.sleep(0.2)


def running_run(stack: Stack) -> run_pb2.Run:
    """A long run under way, with a result stored."""
    run = stack.new_run(stack.experiment(to_csv(slow_table(3000)), "label"), workers=2, max_models=100)
    stack.execute(run)
    wait_results(stack, run, 1)
    return run


def write_state(stack: Stack, run: run_pb2.Run, state: int, reason: int, message: str) -> None:
    """What the gateway's supervisor may write behind the runner's back."""
    request = storage_service_pb2.UpdateRunStateRequest(
        name=run.name, expected_states=[c.RUN_STATE_RUNNING], state=state, stop_reason=reason, status_message=message
    )
    stack.storage.UpdateRunState(request, timeout=30)


@pytest.mark.slow
def test_a_killed_runner_leaves_its_results_and_a_new_one_works(own_stack: Stack):
    """kill -9 mid-run: every stored result stays, complete; the run stays
    RUNNING with a stale heartbeat (the gateway's supervisor marks it
    RUNNER_LOST); a restarted runner takes new runs."""
    own_stack.env["AUTOML_RUNNER_WORKER_MEMORY_MB"] = "0"
    own_stack.stop("runner")
    own_stack.start("runner")
    experiment = own_stack.experiment(to_csv(slow_table(3000)), "label")
    run = own_stack.new_run(experiment, workers=2, max_models=100)
    own_stack.execute(run)
    wait_results(own_stack, run, 3)
    own_stack.stop("runner", kill=True)
    kept = own_stack.results(run)
    time.sleep(2)
    after = own_stack.results(run)
    assert [r.name for r in after] == [r.name for r in kept] and len(kept) >= 3
    assert all(
        # 3 folds, or 2 for a candidate raced out after its first folds.
        len(r.folds) == r.folds_run >= 2
        for r in kept
        if r.outcome == run_pb2.ModelResult.OUTCOME_SUCCEEDED
    )
    lost = own_stack.get(run)
    assert lost.state == c.RUN_STATE_RUNNING and lost.models_evaluated + lost.models_failed == len(kept)
    own_stack.start("runner")
    again = own_stack.new_run(own_stack.experiment(sklearn_csv("iris"), "target"), workers=2, max_models=2)
    own_stack.execute(again)
    assert own_stack.wait_end(again).state == c.RUN_STATE_SUCCEEDED


@pytest.mark.slow
def test_the_memory_guard_kills_a_worker_over_the_limit(own_stack: Stack):
    """A limit below what any worker needs: each candidate (each takes longer
    than the guard's poll) is killed and recorded OUT_OF_MEMORY with the
    figures, and the run goes on to its end."""
    experiment = own_stack.experiment(
        to_csv(slow_table(3000)), "label", allowed_model_families=["RandomForestClassifier"]
    )
    run = own_stack.new_run(experiment, workers=2, max_models=3)
    own_stack.execute(run)
    end = own_stack.wait_end(run, timeout=120)
    assert (end.state, end.stop_reason, end.models_failed) == (c.RUN_STATE_SUCCEEDED, c.STOP_REASON_MAX_MODELS, 3)
    results = own_stack.results(run)
    assert {r.outcome for r in results} == {run_pb2.ModelResult.OUTCOME_OUT_OF_MEMORY}
    assert all("over the limit of 40 MiB" in r.error_message for r in results)


@pytest.mark.slow
def test_stopping_written_in_storage_is_obeyed(stack: Stack):
    """The gateway's supervisor may write STOPPING itself: the runner sees it
    on its next heartbeat and ends the run with that reason."""
    run = running_run(stack)
    write_state(stack, run, c.RUN_STATE_STOPPING, c.STOP_REASON_NO_IMPROVEMENT, "supervisor: no improvement")
    end = stack.wait_end(run, timeout=30)
    assert (end.state, end.stop_reason) == (c.RUN_STATE_SUCCEEDED, c.STOP_REASON_NO_IMPROVEMENT)
    assert kinds(stack.finished_events(run))[-1] == "RUN_FINISHED"


@pytest.mark.slow
def test_a_run_ended_elsewhere_is_abandoned_without_writing(stack: Stack):
    run = running_run(stack)
    write_state(stack, run, c.RUN_STATE_FAILED, c.STOP_REASON_RUNNER_LOST, "supervisor: no heartbeat")
    deadline = time.monotonic() + 20
    while stack.runner.GetRunnerStatus(runner_service_pb2.GetRunnerStatusRequest(), timeout=10).active_runs:
        assert time.monotonic() < deadline, "the runner still executes a run that ended elsewhere"
        time.sleep(0.2)
    end = stack.get(run)
    assert (end.state, end.stop_reason, end.status_message) == (
        c.RUN_STATE_FAILED,
        c.STOP_REASON_RUNNER_LOST,
        "supervisor: no heartbeat",
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "target", "task", "models"),
    [
        ("titanic.csv", "Survived", c.TASK_CLASSIFICATION, 4),
        ("auto-mpg.csv", "mpg", c.TASK_REGRESSION, 4),
        ("glass.csv", "Type", c.TASK_CLASSIFICATION, 4),
        ("churn_modelling.csv", "Exited", c.TASK_CLASSIFICATION, 2),
    ],
)
def test_shared_real_datasets(stack: Stack, file, target, task, models):
    """Numbers, categories, text and missing values (titanic), regression
    (auto-mpg), multiclass (glass), 10,000 rows (churn)."""
    experiment = stack.experiment(shared_csv(file), target, task=task)
    run = stack.new_run(experiment, workers=2, max_models=models)
    stack.execute(run)
    end = stack.wait_end(run, timeout=300)
    assert end.state == c.RUN_STATE_SUCCEEDED, end.status_message
    assert failures(stack.results(run)) == []
    assert end.best_score > (0.5 if task == c.TASK_REGRESSION else 0.6)


@pytest.mark.slow
def test_two_runners_never_execute_one_run(tmp_path: Path):
    """Several runners can serve one suite: the same run sent to two of them
    at once is claimed by exactly one (storage's compare-and-set)."""
    stack = start_stack(tmp_path)
    env = stack.env | {"AUTOML_RUNNER_PORT": str(free_port()), "AUTOML_RUNNER_ID": "second-runner"}
    second = spawn("services.runner", env, tmp_path / "runner2.log")
    try:
        target = f"127.0.0.1:{env['AUTOML_RUNNER_PORT']}"
        wait_serving(target, "automl.v1.Runner", second, timeout=60, log=tmp_path / "runner2.log")
        runners = [stack.runner, runner_service_pb2_grpc.RunnerStub(internal.channel(target))]
        experiment = stack.experiment(sklearn_csv("iris"), "target")
        for _ in range(3):
            run = stack.new_run(experiment, workers=1, max_models=1)

            def claim(stub, run=run):
                try:
                    return stub.ExecuteRun(runner_service_pb2.ExecuteRunRequest(name=run.name), timeout=60).runner_id
                except grpc.RpcError as exc:
                    return exc.code()

            with ThreadPoolExecutor(2) as pool:
                outcomes = list(pool.map(claim, runners))
            winners = [o for o in outcomes if isinstance(o, str)]
            assert len(winners) == 1 and grpc.StatusCode.FAILED_PRECONDITION in outcomes, outcomes
            end = stack.wait_end(run)
            assert end.state == c.RUN_STATE_SUCCEEDED and end.runner_id == winners[0]
    finally:
        second.terminate()
        second.wait(timeout=30)
        stop_stack(stack)
