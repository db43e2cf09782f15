"""The run queue, end to end: four real processes, one runner of 2 workers
(a run of 2 workers fills it). A run that finds the runner busy waits QUEUED
with its place, runs start in a fair order between tenants as capacity frees,
StopRun cancels a queued run, a queue past the tenant's cap is refused, and a
runner that shuts down hands its run back to the queue."""

from __future__ import annotations

import datetime as dt
import threading
import time

import grpc
import pytest

from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, run_pb2
from services.storage.runqueue import Queued, fair_order
from tests.gateway.conftest import start_gateway_suite, stop_gateway_suite
from tests.runner.conftest import seconds, sklearn_csv


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    running = start_gateway_suite(tmp_path_factory.mktemp("queue"), {"AUTOML_TENANT_MAX_QUEUED_RUNS": "2"})
    try:
        yield running
    finally:
        stop_gateway_suite(running)


def wait_for(client, run, *states, timeout: float = 60) -> run_pb2.Run:
    deadline = time.monotonic() + timeout
    while (current := client.get(run)).state not in states:
        assert time.monotonic() < deadline, f"{run.name} still {c.RunState.Name(current.state)}"
        time.sleep(0.1)
    return current


def test_fair_order_between_tenants():
    """Pure: a tenant's n-th place comes after every other tenant's earlier ones,
    places held by running runs included; taken-over runs first."""
    t = [dt.datetime(2026, 1, 1, 0, 0, second) for second in range(6)]
    queued = [
        Queued("a1", "alpha", t[0], False),
        Queued("a2", "alpha", t[1], False),
        Queued("a3", "alpha", t[2], False),
        Queued("b1", "beta", t[3], False),
        Queued("g1", "gamma", t[5], True),
    ]
    assert fair_order(queued, {}) == ["g1", "a1", "b1", "a2", "a3"]
    assert fair_order(queued, {"alpha": 1}) == ["g1", "b1", "a1", "a2", "a3"]
    assert fair_order(queued, {"beta": 2}) == ["g1", "a1", "a2", "a3", "b1"]
    # Equal places: the tenant served least recently first.
    assert fair_order(queued, {}, {"alpha": t[4]}) == ["g1", "b1", "a1", "a2", "a3"]


def test_runs_queue_and_start_fairly_as_capacity_frees(suite):
    alpha, beta = suite.client("alpha"), suite.client("beta")
    data = sklearn_csv("iris")
    exp_a, exp_b = alpha.experiment(data, "target"), beta.experiment(data, "target")
    first = alpha.start(exp_a, max_duration=seconds(60))
    assert first.state == c.RUN_STATE_RUNNING
    second = alpha.start(exp_a, max_models=2)
    third = alpha.start(exp_a, max_models=2)
    assert second.state == third.state == c.RUN_STATE_QUEUED
    assert "no runner has capacity" in second.status_message
    assert (second.queue_position, third.queue_position) == (1, 2)
    # The cap (2 queued for alpha here): one more is refused and leaves a CANCELLED run saying why.
    with pytest.raises(grpc.RpcError) as refused:
        alpha.start(exp_a, max_models=2)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "AUTOML_TENANT_MAX_QUEUED_RUNS" in refused.value.details()
    # beta's one run goes before alpha's two, which hold a running run already.
    other = beta.start(exp_b, max_models=2)
    assert other.state == c.RUN_STATE_QUEUED and other.queue_position == 1
    assert (alpha.get(second).queue_position, alpha.get(third).queue_position) == (2, 3)

    watched: list[event_pb2.Event] = []
    watcher = threading.Thread(target=lambda: watched.extend(alpha.watch(second, timeout=120)[1]))
    watcher.start()

    # StopRun on a queued run cancels it, and the others move up.
    stopped = alpha.call("StopRun", run_pb2.StopRunRequest(name=third.name))
    assert stopped.state == c.RUN_STATE_CANCELLED and stopped.stop_reason == c.STOP_REASON_USER

    alpha.call("StopRun", run_pb2.StopRunRequest(name=first.name))
    started_other = wait_for(beta, other, c.RUN_STATE_RUNNING, *TERMINAL)
    assert alpha.get(second).state == c.RUN_STATE_QUEUED or started_other.state in TERMINAL
    ended_other = beta.wait_end(other, timeout=120)
    ended_second = alpha.wait_end(second, timeout=120)
    assert ended_other.state == ended_second.state == c.RUN_STATE_SUCCEEDED
    # In the fair order: beta's run was claimed before alpha's.
    assert ended_other.claim_time.ToNanoseconds() < ended_second.claim_time.ToNanoseconds()
    watcher.join(timeout=30)
    kinds = [e.type for e in watched]
    assert event_pb2.EVENT_TYPE_RUN_QUEUED in kinds  # it moved up: 2 -> 1
    moved = [e.run_queued.position for e in watched if e.type == event_pb2.EVENT_TYPE_RUN_QUEUED]
    assert moved[-1] == 1
    assert kinds[-1] == event_pb2.EVENT_TYPE_RUN_FINISHED


def test_a_runner_that_shuts_down_hands_its_run_back(suite):
    client = suite.client("alpha")
    experiment = client.experiment(sklearn_csv("iris"), "target")
    run = client.start(experiment, max_duration=seconds(15))
    deadline = time.monotonic() + 60
    while client.get(run).models_evaluated < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    suite.stack.stop("runner")  # SIGTERM: a graceful shutdown
    try:
        handed = wait_for(client, run, c.RUN_STATE_QUEUED, timeout=30)
        assert "shut down" in handed.status_message and handed.takeovers == 0
    finally:
        suite.stack.start("runner")
    ended = client.wait_end(run, timeout=120)
    assert ended.state == c.RUN_STATE_SUCCEEDED, ended.status_message
    assert ended.takeovers == 0
    assert any("goes on from the" in note for note in ended.notes)


TERMINAL = (c.RUN_STATE_SUCCEEDED, c.RUN_STATE_STOPPED, c.RUN_STATE_FAILED, c.RUN_STATE_CANCELLED)
