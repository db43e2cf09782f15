"""The gateway's supervisor: it enforces every stop condition of a run whose
runner does not, has a run whose runner stopped heartbeating taken over
(results kept; FAILED, RUNNER_LOST, past the takeovers allowed), ends
trainings whose runner went silent, and goes on after a gateway restart from
what storage holds.

A "ghost" runner played by the test (it claims runs and writes results
through storage, as a runner that ignores its limits would) lets each
condition be checked on the gateway alone; a real runner killed mid-run
and restarted checks the takeover end to end."""

from __future__ import annotations

import io
import threading
import time

import grpc
import numpy as np
import pandas as pd
import pytest

from automl.common import identity
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, model_pb2, run_pb2, storage_service_pb2, storage_service_pb2_grpc
from tests import internal
from tests.gateway.conftest import start_gateway_suite, stop_gateway_suite
from tests.runner.conftest import seconds, sklearn_csv

GHOST = "ghost-runner"


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    running = start_gateway_suite(tmp_path_factory.mktemp("supervisor"))
    try:
        yield running
    finally:
        stop_gateway_suite(running)


@pytest.fixture(scope="module")
def experiment(suite):
    return suite.client().experiment(sklearn_csv("iris"), "target")


class Ghost:
    """A runner that claims a run, heartbeats and stores results, and enforces nothing."""

    def __init__(self, suite, experiment, **conditions):
        self.channel = internal.channel(suite.stack.target("storage"), identity.RUNNER)
        self.storage = storage_service_pb2_grpc.StorageStub(self.channel)
        self.metadata = [("x-automl-tenant", "alpha")]
        run = run_pb2.Run(experiment=experiment.name, stop_conditions=c.StopConditions(**conditions))
        created = self.storage.CreateRun(storage_service_pb2.CreateRunRequest(run=run), metadata=self.metadata)
        self.run = self.storage.UpdateRunState(
            storage_service_pb2.UpdateRunStateRequest(
                name=created.name,
                expected_states=[c.RUN_STATE_PENDING],
                state=c.RUN_STATE_RUNNING,
                runner_id=GHOST,
            ),
            metadata=self.metadata,
        )
        self.index = 0
        self.beating = threading.Event()
        self.beating.set()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self):
        while self.beating.is_set():
            try:
                self.storage.HeartbeatRun(
                    storage_service_pb2.HeartbeatRunRequest(name=self.run.name, runner_id=GHOST),
                    metadata=self.metadata,
                    timeout=5,
                )
            except grpc.RpcError:
                return  # the run ended
            time.sleep(0.3)

    def results(self, *scores: float) -> run_pb2.Run:
        batch = []
        for score in scores:
            self.index += 1
            batch.append(
                run_pb2.ModelResult(
                    index=self.index,
                    model_family="Ghost",
                    outcome=run_pb2.ModelResult.OUTCOME_SUCCEEDED,
                    primary_score=score,
                    metrics=[c.MetricSummary(metric=c.METRIC_ACCURACY, mean=score)],
                    folds_run=1,
                )
            )
        reply = self.storage.BatchCreateModelResults(
            storage_service_pb2.BatchCreateModelResultsRequest(run=self.run.name, model_results=batch),
            metadata=self.metadata,
        )
        return reply.run

    def get(self) -> run_pb2.Run:
        return self.storage.GetRun(run_pb2.GetRunRequest(name=self.run.name), metadata=self.metadata)

    def wait_state(self, *states: int, timeout: float = 30) -> run_pb2.Run:
        deadline = time.monotonic() + timeout
        while (run := self.get()).state not in states:
            assert time.monotonic() < deadline, f"still {c.RunState.Name(run.state)}"
            time.sleep(0.1)
        return run

    def close(self):
        self.beating.clear()
        self.thread.join(timeout=5)
        self.channel.close()


def events(suite, run: run_pb2.Run) -> list[event_pb2.Event]:
    channel = internal.channel(suite.stack.target("storage"), identity.RUNNER)
    reply = storage_service_pb2_grpc.StorageStub(channel).ListEvents(
        storage_service_pb2.ListEventsRequest(run=run.name), metadata=[("x-automl-tenant", "alpha")]
    )
    channel.close()
    return list(reply.events)


@pytest.mark.parametrize(
    ("conditions", "scores", "reason"),
    [
        ({"target_score": 0.9}, (0.5, 0.95), c.STOP_REASON_TARGET_SCORE),
        ({"max_models": 3}, (0.5, 0.6, 0.7), c.STOP_REASON_MAX_MODELS),
        ({"no_improvement_models": 2, "max_models": 50}, (0.8, 0.5, 0.6), c.STOP_REASON_NO_IMPROVEMENT),
        ({"max_duration": seconds(1)}, (), c.STOP_REASON_TIME_BUDGET),
    ],
    ids=["target_score", "max_models", "no_improvement", "time_budget"],
)
def test_supervisor_stops_a_run_its_runner_does_not(suite, experiment, conditions, scores, reason):
    ghost = Ghost(suite, experiment, **conditions)
    try:
        if scores:
            ghost.results(*scores)
        run = ghost.wait_state(c.RUN_STATE_STOPPING)
        assert run.stop_reason == reason
        # The event follows the state change (storage first, then the notifier).
        deadline = time.monotonic() + 15
        while not (stop := [e for e in events(suite, run) if e.type == event_pb2.EVENT_TYPE_STOP_REQUESTED]):
            assert time.monotonic() < deadline, "no STOP_REQUESTED event"
            time.sleep(0.1)
        assert [e.stop_requested.reason for e in stop] == [reason]
    finally:
        ghost.close()


def test_target_score_of_a_loss_is_reached_downwards(suite):
    client = suite.client()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 200)
    frame = pd.DataFrame({"x": x, "y": 3 * x + rng.normal(0, 1, 200)})
    out = io.StringIO()
    frame.to_csv(out, index=False)
    regression = client.experiment(out.getvalue().encode(), "y", task=c.TASK_REGRESSION, primary_metric=c.METRIC_RMSE)
    ghost = Ghost(suite, regression, target_score=1.5)
    try:
        batch = [
            run_pb2.ModelResult(
                index=1,
                model_family="Ghost",
                outcome=run_pb2.ModelResult.OUTCOME_SUCCEEDED,
                primary_score=2.5,
                metrics=[c.MetricSummary(metric=c.METRIC_RMSE, mean=2.5)],
                folds_run=1,
            )
        ]
        ghost.storage.BatchCreateModelResults(
            storage_service_pb2.BatchCreateModelResultsRequest(run=ghost.run.name, model_results=batch),
            metadata=ghost.metadata,
        )
        time.sleep(1.5)  # five supervisor rounds: an RMSE of 2.5 is not a target of 1.5
        assert ghost.get().state == c.RUN_STATE_RUNNING
        batch[0].index, batch[0].primary_score, batch[0].metrics[0].mean = 2, 1.2, 1.2
        ghost.storage.BatchCreateModelResults(
            storage_service_pb2.BatchCreateModelResultsRequest(run=ghost.run.name, model_results=batch),
            metadata=ghost.metadata,
        )
        assert ghost.wait_state(c.RUN_STATE_STOPPING).stop_reason == c.STOP_REASON_TARGET_SCORE
    finally:
        ghost.close()


def assert_contiguous(events: list[event_pb2.Event]) -> None:
    """The run's event log: 1, 2, 3... with no gap and no duplicate."""
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))


def test_silent_runner_is_taken_over_and_results_are_kept(suite, experiment):
    ghost = Ghost(suite, experiment, max_models=4)
    try:
        ghost.results(0.5, 0.7)
        client = suite.client()
        watched = []

        def watch():
            watched.extend(client.watch(ghost.run, timeout=90)[1])

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.5)
        ghost.beating.clear()  # the runner dies
        run = client.wait_end(ghost.run, timeout=90)
        assert run.state == c.RUN_STATE_SUCCEEDED and run.stop_reason == c.STOP_REASON_MAX_MODELS
        assert run.takeovers == 1 and run.runner_id != GHOST
        # The ghost's two results carry on: two more make the four allowed.
        assert run.models_evaluated + run.models_failed >= 4
        assert run.best_score >= 0.7
        assert any("goes on from the 2 results stored" in note for note in run.notes)
        watcher.join(timeout=30)
        kinds = [e.type for e in watched]
        assert event_pb2.EVENT_TYPE_RUN_QUEUED in kinds
        queued = next(e for e in watched if e.type == event_pb2.EVENT_TYPE_RUN_QUEUED).run_queued
        assert queued.takeovers == 1 and "sent no heartbeat" in queued.message
        assert watched[-1].type == event_pb2.EVENT_TYPE_RUN_FINISHED
        assert_contiguous(events(suite, run))
    finally:
        ghost.close()


def test_takeovers_are_bounded(suite, experiment):
    """Past AUTOML_RUN_MAX_TAKEOVERS (3), a lost run is FAILED with why."""
    ghost = Ghost(suite, experiment, max_models=100)
    try:
        ghost.results(0.6)
        for _ in range(3):  # three takeovers, each claimed back by the ghost at once
            ghost.storage.UpdateRunState(
                storage_service_pb2.UpdateRunStateRequest(
                    name=ghost.run.name,
                    expected_states=[c.RUN_STATE_RUNNING],
                    state=c.RUN_STATE_QUEUED,
                    takeover=True,
                ),
                metadata=ghost.metadata,
            )
            ghost.storage.UpdateRunState(
                storage_service_pb2.UpdateRunStateRequest(
                    name=ghost.run.name,
                    expected_states=[c.RUN_STATE_QUEUED],
                    state=c.RUN_STATE_RUNNING,
                    runner_id=GHOST,
                ),
                metadata=ghost.metadata,
            )
        assert ghost.get().takeovers == 3
        ghost.beating.clear()
        run = ghost.wait_state(c.RUN_STATE_FAILED, timeout=30)
        assert run.stop_reason == c.STOP_REASON_RUNNER_LOST
        assert "taken over 3 times already" in run.status_message
        assert run.models_evaluated == 1
    finally:
        ghost.close()


def test_a_training_whose_runner_is_silent_ends_failed(suite, experiment):
    ghost = Ghost(suite, experiment, max_models=1)
    try:
        ghost.results(0.6)
        result = ghost.storage.ListModelResults(
            run_pb2.ListModelResultsRequest(run=ghost.run.name), metadata=ghost.metadata
        ).model_results[0]
        # A training no runner moves (its runner died): TRAINING, never again updated.
        model = ghost.storage.CreateTrainedModel(
            storage_service_pb2.CreateTrainedModelRequest(
                trained_model=model_pb2.TrainedModel(model_result=result.name)
            ),
            metadata=ghost.metadata,
        )
        client = suite.client()
        deadline = time.monotonic() + 30
        while (
            current := client.call("GetTrainedModel", model_pb2.GetTrainedModelRequest(name=model.name))
        ).state == model_pb2.TrainedModel.STATE_TRAINING:
            assert time.monotonic() < deadline, "still TRAINING"
            time.sleep(0.2)
        assert current.state == model_pb2.TrainedModel.STATE_FAILED
        assert "gave no sign of life" in current.error_message
        deadline = time.monotonic() + 15
        while not (trained := [e for e in events(suite, ghost.run) if e.type == event_pb2.EVENT_TYPE_MODEL_TRAINED]):
            assert time.monotonic() < deadline, "no MODEL_TRAINED event"
            time.sleep(0.2)
        assert trained[0].model_trained.trained_model == model.name
        assert trained[0].model_trained.state == model_pb2.TrainedModel.STATE_FAILED
        # Its end is final: a late heartbeat of the lost runner cannot bring it back.
        with pytest.raises(grpc.RpcError) as error:
            ghost.storage.UpdateTrainedModel(
                storage_service_pb2.UpdateTrainedModelRequest(
                    trained_model=model_pb2.TrainedModel(name=model.name, state=model_pb2.TrainedModel.STATE_TRAINING),
                    update_mask={"paths": ["state"]},
                ),
                metadata=ghost.metadata,
            )
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        ghost.close()


def test_an_end_its_runner_did_not_tell_is_told_once_and_ends_live_watchers(suite, experiment):
    """A runner killed between storing its run's end and publishing it left an
    ended run whose log never said so, and whose live watchers waited."""
    from automl.common.runs import final_events
    from automl.v1 import notifier_service_pb2, notifier_service_pb2_grpc

    ghost = Ghost(suite, experiment, max_models=100)
    client = suite.client()
    watched: list[list[event_pb2.Event]] = []
    try:
        ghost.results(0.7)
        watcher = threading.Thread(target=lambda: watched.append(client.watch(ghost.run, after=0, timeout=60)[1]))
        watcher.start()
        time.sleep(1)  # the supervisor sees it RUNNING
        ended = ghost.storage.UpdateRunState(
            storage_service_pb2.UpdateRunStateRequest(
                name=ghost.run.name,
                expected_states=[c.RUN_STATE_RUNNING],
                state=c.RUN_STATE_SUCCEEDED,
                stop_reason=c.STOP_REASON_MAX_MODELS,
                status_message="told by nobody",
            ),
            metadata=ghost.metadata,
        )  # ...and the ghost "dies" before it publishes the end
        watcher.join(timeout=30)  # AUTOML_RUNNER_LOST_SECONDS (5) for the runner to tell it first
        assert not watcher.is_alive(), "the live watcher still waits for the run's end"
        finished = [e for e in watched[0] if e.type == event_pb2.EVENT_TYPE_RUN_FINISHED]
        assert [(e.run_finished.state, e.run_finished.models_evaluated) for e in finished] == [
            (c.RUN_STATE_SUCCEEDED, 1)
        ]
        # The runner's own Publish of its end, late: the same ids, stored and delivered once.
        channel = internal.channel(suite.stack.target("notifier"), identity.RUNNER)
        notifier_service_pb2_grpc.NotifierStub(channel).Publish(
            notifier_service_pb2.PublishRequest(events=final_events(ended, c.RUN_STATE_RUNNING, "late")),
            metadata=ghost.metadata,
        )
        channel.close()
        log = events(suite, ghost.run)
        assert [e.type for e in log][-2:] == [event_pb2.EVENT_TYPE_RUN_STATE_CHANGED, event_pb2.EVENT_TYPE_RUN_FINISHED]
        assert sum(e.type == event_pb2.EVENT_TYPE_RUN_FINISHED for e in log) == 1
        assert [e.sequence for e in log] == list(range(1, len(log) + 1))
    finally:
        ghost.close()


def test_supervision_survives_a_gateway_restart(suite, experiment):
    ghost = Ghost(suite, experiment, max_models=3)
    try:
        suite.stack.stop("gateway", kill=True)
        ghost.results(0.5, 0.6, 0.7)  # the limit is reached while no gateway runs
        time.sleep(1)
        assert ghost.get().state == c.RUN_STATE_RUNNING
        suite.stack.start("gateway")
        run = ghost.wait_state(c.RUN_STATE_STOPPING)
        assert run.stop_reason == c.STOP_REASON_MAX_MODELS
    finally:
        ghost.close()


def test_killed_runner_is_taken_over_mid_run(suite, experiment):
    """kill -9 of the runner mid-run, restarted: the run goes on where it was
    and ends SUCCEEDED with every result, its event log whole."""
    client = suite.client()
    run = client.start(experiment, max_duration=seconds(15))
    deadline = time.monotonic() + 60
    while client.get(run).models_evaluated < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    suite.stack.stop("runner", kill=True)
    before = client.get(run)
    suite.stack.start("runner")
    ended = client.wait_end(run, timeout=120)
    assert ended.state == c.RUN_STATE_SUCCEEDED, ended.status_message
    assert ended.stop_reason == c.STOP_REASON_TIME_BUDGET
    assert ended.takeovers == 1
    assert ended.models_evaluated > before.models_evaluated
    assert ended.prior_search_time.ToTimedelta().total_seconds() > 0
    results = client.call("ListModelResults", run_pb2.ListModelResultsRequest(run=run.name, page_size=1000))
    indexes = [r.index for r in results.model_results]
    assert len(indexes) == len(set(indexes))  # no result written twice
    stored = {r.name for r in results.model_results if r.outcome == run_pb2.ModelResult.OUTCOME_SUCCEEDED}
    board = client.call("GetLeaderboard", run_pb2.GetLeaderboardRequest(run=run.name, page_size=1000))
    assert {e.model_result.name for e in board.entries} == stored
    assert_contiguous(events(suite, run))


def test_killed_notifier_mid_run_loses_no_event(suite, experiment):
    """kill -9 of the notifier mid-run, restarted: the runner keeps the events
    it could not publish and sends them when it is back; the run's event log
    ends whole (no gap, no duplicate) and the run SUCCEEDED."""
    client = suite.client()
    run = client.start(experiment, max_duration=seconds(15))
    deadline = time.monotonic() + 60
    while client.get(run).models_evaluated < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    suite.stack.stop("notifier", kill=True)
    time.sleep(3)  # results stored meanwhile; their events wait in the runner's outbox
    suite.stack.start("notifier")
    ended = client.wait_end(run, timeout=120)
    assert ended.state == c.RUN_STATE_SUCCEEDED, ended.status_message
    deadline = time.monotonic() + 30
    while (stored := events(suite, run))[-1].type != event_pb2.EVENT_TYPE_RUN_FINISHED:
        assert time.monotonic() < deadline, "the run's last events never arrived"
        time.sleep(0.5)
    assert_contiguous(stored)
    assert len({e.id for e in stored}) == len(stored)
    evaluated = [e for e in stored if e.type == event_pb2.EVENT_TYPE_MODEL_EVALUATED]
    failed = [e for e in stored if e.type == event_pb2.EVENT_TYPE_MODEL_FAILED]
    assert len(evaluated) == ended.models_evaluated
    assert len(failed) == ended.models_failed + ended.models_stopped


def test_killed_runner_mid_training_leaves_no_model_training(suite):
    """kill -9 of the runner while it trains, restarted: the model ends FAILED
    with the reason (never left TRAINING), and training it again works."""
    client = suite.client()
    digits = client.experiment(sklearn_csv("digits"), "target")
    run = client.wait_end(client.start(digits, max_models=1), timeout=120)
    assert run.best_model_result, run.status_message
    model = client.call("TrainModel", model_pb2.TrainModelRequest(model_result=run.best_model_result))
    assert model.state == model_pb2.TrainedModel.STATE_TRAINING
    suite.stack.stop("runner", kill=True)  # at once: the runner is still reading the data or fitting
    suite.stack.start("runner")
    deadline = time.monotonic() + 60
    while (
        current := client.call("GetTrainedModel", model_pb2.GetTrainedModelRequest(name=model.name))
    ).state == model_pb2.TrainedModel.STATE_TRAINING:
        assert time.monotonic() < deadline, "left TRAINING"
        time.sleep(0.2)
    assert current.state == model_pb2.TrainedModel.STATE_FAILED
    assert "train the model again" in current.error_message
    again = client.train(run.best_model_result, timeout=120)
    assert again.state == model_pb2.TrainedModel.STATE_READY, again.error_message


def test_killed_storage_mid_run_does_not_fail_the_run(suite, experiment):
    """kill -9 of storage mid-run, restarted: the runner waits for it
    (bench/chaos.py found runs FAILED by a few seconds of outage)."""
    client = suite.client()
    run = client.start(experiment, max_duration=seconds(15))
    deadline = time.monotonic() + 60
    while client.get(run).models_evaluated < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    suite.stack.stop("storage", kill=True)
    time.sleep(4)  # results and state changes wait for it
    suite.stack.start("storage")
    deadline = time.monotonic() + 10  # the gateway reconnects within a couple of seconds
    while True:
        try:
            ended = client.wait_end(run, timeout=120)
            break
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, error
            time.sleep(0.5)
    assert ended.state == c.RUN_STATE_SUCCEEDED, ended.status_message
    assert_contiguous(events(suite, run))
