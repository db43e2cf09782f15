"""Experiments, runs, model results, the leaderboard, trained models, artifacts
and the event log through the storage service, on every backend."""

from __future__ import annotations

import asyncio
import functools

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from automl.common import status
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, event_pb2, experiment_pb2, model_pb2, run_pb2
from automl.v1 import storage_service_pb2 as pb
from services.storage import schema
from tests.storage.helpers import mixed_csv, upload_stream

R = run_pb2.ModelResult
BOUND = c.StopConditions(max_models=10)


async def dataset(storage, rows: int = 100) -> dataset_pb2.Dataset:
    return await storage.stub.UploadDataset(upload_stream(mixed_csv(rows)))


async def experiment(storage, **fields) -> experiment_pb2.Experiment:
    data = await dataset(storage)
    spec = experiment_pb2.Experiment(dataset=data.name, target_column="label", **fields)
    return await storage.stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=spec))


async def run(storage, exp=None, **conditions) -> run_pb2.Run:
    exp = exp or await experiment(storage)
    cond = c.StopConditions(**conditions) if conditions else BOUND
    return await storage.stub.CreateRun(pb.CreateRunRequest(run=run_pb2.Run(experiment=exp.name, stop_conditions=cond)))


def result(score: float | None, outcome=R.OUTCOME_SUCCEEDED, family="RandomForestClassifier") -> R:
    message = R(outcome=outcome, model_family=family, model_json='["RandomForestClassifier", {}]', folds_run=5)
    if score is not None:
        message.primary_score = score
        message.metrics.add(metric=c.METRIC_ACCURACY, mean=score, std=0.01, train_mean=min(1.0, score + 0.05))
        message.metrics.add(metric=c.METRIC_LOG_LOSS, mean=1 - score, std=0.02)
        message.folds.add(fold_nb=0, values={"test_accuracy": score, "fit_time": 0.5, "n_test_samples": 20})
    else:
        message.error_message = "ValueError: cannot fit"
    return message


async def invalid(coro) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await coro
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value


# ------------------------------------------------------------------ experiments


async def test_experiment_defaults_and_task_resolution(storage):
    exp = await experiment(storage)
    assert exp.resolved_task == c.TASK_CLASSIFICATION
    assert exp.primary_metric == c.METRIC_ACCURACY
    assert (exp.cv_folds, exp.holdout_fraction) == (5, pytest.approx(0.2))
    assert exp.display_name.startswith("label on ")
    data = await dataset(storage, rows=300)
    fare = await storage.stub.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(dataset=data.name, target_column="fare")
        )
    )
    assert fare.resolved_task == c.TASK_REGRESSION and fare.primary_metric == c.METRIC_R2


async def test_client_chosen_id_and_already_exists(storage):
    data = await dataset(storage)
    spec = experiment_pb2.Experiment(dataset=data.name, target_column="label")
    made = await storage.stub.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=spec, experiment_id="churn-v1")
    )
    assert made.name == "experiments/churn-v1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.CreateExperiment(
            experiment_pb2.CreateExperimentRequest(experiment=spec, experiment_id="churn-v1")
        )
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS
    other = await storage.stub.UploadDataset(upload_stream(mixed_csv(10)), metadata=storage.tenant("bob"))
    theirs = await storage.stub.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(dataset=other.name, target_column="label"), experiment_id="churn-v1"
        ),
        metadata=storage.tenant("bob"),
    )
    assert theirs.name == "experiments/churn-v1", "ids are per tenant"
    error = await invalid(
        storage.stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=spec, experiment_id="A!"))
    )
    assert status.field_violations(error)[0].field == "experiment_id"


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"target_column": "nope"}, "experiment.target_column", "'nope' is not a column"),
        ({"task": c.TASK_REGRESSION, "target_column": "city"}, "experiment.task", "numeric target"),
        ({"primary_metric": c.METRIC_R2}, "experiment.primary_metric", "does not suit"),
        ({"cv_folds": 1}, "experiment.cv_folds", "2 to 20"),
        ({"holdout_fraction": 0.9}, "experiment.holdout_fraction", "0 to 0.5"),
        ({"excluded_columns": ["label"]}, "experiment.excluded_columns", "cannot be excluded"),
        ({"excluded_columns": ["ghost"]}, "experiment.excluded_columns", "ghost"),
        (
            {"default_stop_conditions": c.StopConditions(max_models=-1)},
            "experiment.default_stop_conditions.max_models",
            "0 (no limit) or more",
        ),
    ],
)
async def test_bad_experiments_name_the_field(storage, fields, field, text):
    data = await dataset(storage)
    spec = experiment_pb2.Experiment(dataset=data.name, target_column="label")
    for key, value in fields.items():
        if isinstance(value, list):
            getattr(spec, key).extend(value)
        elif hasattr(value, "CopyFrom"):
            getattr(spec, key).CopyFrom(value)
        else:
            setattr(spec, key, value)
    error = await invalid(storage.stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=spec)))
    assert status.field_violations(error)[0].field == field
    assert text in error.details()
    assert storage.count(schema.Experiment) == 0


async def test_one_class_target_is_refused(storage):
    data = await storage.stub.UploadDataset(upload_stream(b"x,y\n1,a\n2,a\n3,a\n"))
    spec = experiment_pb2.Experiment(dataset=data.name, target_column="y")
    error = await invalid(storage.stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=spec)))
    assert "one class" in error.details()


async def test_update_mask(storage):
    exp = await experiment(storage)
    change = experiment_pb2.Experiment(
        name=exp.name, display_name="renamed", default_stop_conditions=c.StopConditions(max_models=3), cv_folds=9
    )
    updated = await storage.stub.UpdateExperiment(
        experiment_pb2.UpdateExperimentRequest(
            experiment=change, update_mask=field_mask_pb2.FieldMask(paths=["display_name", "default_stop_conditions"])
        )
    )
    assert updated.display_name == "renamed" and updated.default_stop_conditions.max_models == 3
    assert updated.cv_folds == 5, "fields outside the mask are untouched"
    error = await invalid(
        storage.stub.UpdateExperiment(
            experiment_pb2.UpdateExperimentRequest(
                experiment=change, update_mask=field_mask_pb2.FieldMask(paths=["cv_folds"])
            )
        )
    )
    assert "cv_folds cannot change" in error.details()


async def test_list_experiments_filters(storage):
    first = await experiment(storage)
    await experiment(storage)
    by_dataset = await storage.stub.ListExperiments(
        experiment_pb2.ListExperimentsRequest(filter=f'dataset="{first.dataset}"')
    )
    assert [e.name for e in by_dataset.experiments] == [first.name]
    error = await invalid(storage.stub.ListExperiments(experiment_pb2.ListExperimentsRequest(filter="colour=red")))
    assert "unknown key 'colour'" in error.details()


# ------------------------------------------------------------------------- runs


async def test_run_needs_a_bound_and_takes_experiment_defaults(storage):
    exp = await experiment(storage)
    error = await invalid(storage.stub.CreateRun(pb.CreateRunRequest(run=run_pb2.Run(experiment=exp.name))))
    assert "cannot go on forever" in error.details()
    assert storage.count(schema.Run) == 0
    exp2 = await experiment(
        storage, default_stop_conditions=c.StopConditions(max_duration=duration_pb2.Duration(seconds=60))
    )
    created = await storage.stub.CreateRun(pb.CreateRunRequest(run=run_pb2.Run(experiment=exp2.name)))
    assert created.state == c.RUN_STATE_PENDING
    assert created.stop_conditions.max_duration.seconds == 60


async def test_run_state_is_compare_and_set(storage):
    created = await run(storage)
    claim = pb.UpdateRunStateRequest(
        name=created.name, expected_states=[c.RUN_STATE_PENDING], state=c.RUN_STATE_RUNNING, runner_id="r1"
    )
    running = await storage.stub.UpdateRunState(claim)
    assert running.state == c.RUN_STATE_RUNNING and running.runner_id == "r1" and running.HasField("start_time")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.UpdateRunState(claim)  # a second runner cannot pick it up
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    await storage.stub.HeartbeatRun(pb.HeartbeatRunRequest(name=created.name, runner_id="r1"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.HeartbeatRun(pb.HeartbeatRunRequest(name=created.name, runner_id="r2"))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    done = await storage.stub.UpdateRunState(
        pb.UpdateRunStateRequest(
            name=created.name,
            expected_states=[c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING],
            state=c.RUN_STATE_SUCCEEDED,
            stop_reason=c.STOP_REASON_MAX_MODELS,
        )
    )
    assert done.state == c.RUN_STATE_SUCCEEDED and done.HasField("end_time")


async def test_concurrent_claims_of_one_run_have_one_winner(storage):
    """Many runners claiming at once (the server handles the calls in threads):
    exactly one moves the run to RUNNING, on every backend."""
    for _ in range(5):
        created = await run(storage)

        async def claim(runner: str, created: run_pb2.Run = created) -> str:
            request = pb.UpdateRunStateRequest(
                name=created.name, expected_states=[c.RUN_STATE_PENDING], state=c.RUN_STATE_RUNNING, runner_id=runner
            )
            try:
                return (await storage.stub.UpdateRunState(request)).runner_id
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is grpc.StatusCode.FAILED_PRECONDITION
                return ""

        winners = [w for w in await asyncio.gather(*(claim(f"r{i}") for i in range(8))) if w]
        assert len(winners) == 1
        stored = await storage.stub.GetRun(run_pb2.GetRunRequest(name=created.name))
        assert stored.runner_id == winners[0]


async def test_delete_experiment_refused_while_a_run_is_active_then_cascades(storage):
    exp = await experiment(storage)
    active = await run(storage, exp)
    await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=active.name, model_results=[result(0.8)])
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.DeleteExperiment(experiment_pb2.DeleteExperimentRequest(name=exp.name))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    await storage.stub.UpdateRunState(
        pb.UpdateRunStateRequest(name=active.name, expected_states=[c.RUN_STATE_PENDING], state=c.RUN_STATE_CANCELLED)
    )
    await storage.stub.DeleteExperiment(experiment_pb2.DeleteExperimentRequest(name=exp.name))
    for table in (schema.Experiment, schema.Run, schema.ModelResult, schema.ModelResultMetric):
        assert storage.count(table) == 0, table.__tablename__


# --------------------------------------------------------- results, leaderboard


async def test_results_update_counters_best_and_leaderboard(storage):
    created = await run(storage)
    batch = [result(0.80), result(0.90), result(None, R.OUTCOME_FAILED), result(0.85), result(0.90)]
    stored = await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=batch)
    )
    assert [r.index for r in stored.model_results] == [1, 2, 3, 4, 5]
    assert [r.was_new_best for r in stored.model_results] == [True, True, False, False, False]
    assert stored.run.models_evaluated == 4 and stored.run.models_failed == 1
    assert stored.run.best_score == pytest.approx(0.90)
    assert stored.run.best_model_result == stored.model_results[1].name

    board = await storage.stub.GetLeaderboard(run_pb2.GetLeaderboardRequest(run=created.name))
    assert board.metric == c.METRIC_ACCURACY and board.higher_is_better and board.total_size == 4
    assert [(e.rank, e.model_result.index) for e in board.entries] == [(1, 2), (1, 5), (3, 4), (4, 1)]
    top = board.entries[0].model_result
    assert not top.model_json and not top.folds, "the leaderboard is the BASIC view"
    accuracy = next(m for m in top.metrics if m.metric == c.METRIC_ACCURACY)
    assert (accuracy.mean, accuracy.std, accuracy.train_mean) == pytest.approx((0.90, 0.01, 0.95))

    by_loss = await storage.stub.GetLeaderboard(
        run_pb2.GetLeaderboardRequest(run=created.name, metric=c.METRIC_LOG_LOSS)
    )
    assert not by_loss.higher_is_better
    assert [e.model_result.index for e in by_loss.entries] == [2, 5, 4, 1]

    paged = await storage.stub.GetLeaderboard(run_pb2.GetLeaderboardRequest(run=created.name, page_size=3))
    rest = await storage.stub.GetLeaderboard(
        run_pb2.GetLeaderboardRequest(run=created.name, page_size=3, page_token=paged.next_page_token)
    )
    assert [(e.rank, e.model_result.index) for e in rest.entries] == [(4, 1)]

    full = await storage.stub.GetModelResult(run_pb2.GetModelResultRequest(name=top.name))
    assert full.model_json and full.folds[0].values["test_accuracy"] == pytest.approx(0.90)
    failed = await storage.stub.ListModelResults(
        run_pb2.ListModelResultsRequest(run=created.name, filter="outcome=OUTCOME_FAILED")
    )
    assert [r.error_message for r in failed.model_results] == ["ValueError: cannot fit"]


async def test_leaderboard_pages_split_ties_as_one_ranking(storage):
    """Each page is bounded by the mean of its last entry (so the join reads that
    page only): ties across a page boundary still come in evaluation order, with
    the rank they share, and no entry is repeated or lost."""
    created = await run(storage)
    scores = [0.9, 0.7, 0.9, 0.8, 0.9, 0.7, 0.6]
    await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[result(s) for s in scores])
    )
    for metric, expected in (
        (c.METRIC_ACCURACY, [(1, 1), (1, 3), (1, 5), (4, 4), (5, 2), (5, 6), (7, 7)]),
        (c.METRIC_LOG_LOSS, [(1, 1), (1, 3), (1, 5), (4, 4), (5, 2), (5, 6), (7, 7)]),
    ):
        for page_size in (1, 2, 3, 7):
            entries, token = [], ""
            while True:
                request = run_pb2.GetLeaderboardRequest(
                    run=created.name, metric=metric, page_size=page_size, page_token=token
                )
                board = await storage.stub.GetLeaderboard(request)
                entries += [(e.rank, e.model_result.index) for e in board.entries]
                token = board.next_page_token
                if not token:
                    break
            assert entries == expected, (metric, page_size)


async def test_a_kept_leaderboard_page_gives_way_to_a_new_result(storage):
    """Storage keeps a page it read under the number of ranked results: the same
    page asked again is the kept one, and a result that came since (a running
    run) is in the next answer, at its rank, on every page it moves."""
    created = await run(storage)
    await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[result(0.7), result(0.8)])
    )

    async def board(page_size: int = 0) -> list[tuple[int, int]]:
        answer = await storage.stub.GetLeaderboard(run_pb2.GetLeaderboardRequest(run=created.name, page_size=page_size))
        return [(e.rank, e.model_result.index) for e in answer.entries]

    assert await board() == await board() == [(1, 2), (2, 1)]
    assert await board(1) == [(1, 2)]
    await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[result(0.9)])
    )
    assert await board() == [(1, 3), (2, 2), (3, 1)]
    assert await board(1) == [(1, 3)]


async def test_bad_results_are_refused_whole(storage):
    created = await run(storage)
    bad = result(0.8)
    bad.ClearField("primary_score")
    error = await invalid(
        storage.stub.BatchCreateModelResults(
            pb.BatchCreateModelResultsRequest(run=created.name, model_results=[result(0.7), bad])
        )
    )
    assert status.field_violations(error)[0].field == "model_results[1].primary_score"
    assert storage.count(schema.ModelResult) == 0


async def test_interrupted_results_count_as_stopped_not_failed(storage):
    """A normal stop of the run interrupts the candidates in flight: they are
    neither failures nor a lack of progress."""
    created = await run(storage, max_models=10, no_improvement_models=5)
    batch = [result(0.8), result(None, R.OUTCOME_FAILED), result(None, R.OUTCOME_INTERRUPTED)]
    stored = await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=batch)
    )
    counts = (stored.run.models_evaluated, stored.run.models_failed, stored.run.models_stopped)
    assert counts == (1, 1, 1)
    await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[result(None, R.OUTCOME_INTERRUPTED)])
    )
    got = await storage.stub.GetRun(run_pb2.GetRunRequest(name=created.name))
    assert (got.models_evaluated, got.models_failed, got.models_stopped) == (1, 1, 2)
    records = await storage.stub.ListRunRecords(pb.ListRunRecordsRequest(), metadata=storage.tenant("*"))
    record = next(r for r in records.records if r.run.name == created.name)
    assert record.run.models_stopped == 2
    assert record.models_since_best == 1, "the failed one after the best; the interrupted ones count nowhere"


async def test_new_result_fields_round_trip(storage):
    created = await run(storage)
    first, second = result(0.8), result(0.7)
    first.sample_rows, first.job_type = 120, "portfolio"
    second.sample_rows, second.job_type = 480, "guided"
    stored = await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[first, second])
    )
    members = stored.model_results
    blend = result(0.85, family="VotingClassifier")
    blend.sample_rows, blend.job_type = 480, "ensemble"
    blend.ensemble_members.add(model_result=members[0].name, index=members[0].index, weight=0.75)
    blend.ensemble_members.add(model_result=members[1].name, index=members[1].index, weight=0.25)
    made = await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[blend])
    )
    assert made.model_results[0].job_type == "ensemble"
    got = await storage.stub.GetModelResult(run_pb2.GetModelResultRequest(name=made.model_results[0].name))
    assert (got.sample_rows, got.job_type) == (480, "ensemble")
    assert [(m.model_result, m.index, m.weight) for m in got.ensemble_members] == [
        (members[0].name, 1, pytest.approx(0.75)),
        (members[1].name, 2, pytest.approx(0.25)),
    ]
    board = await storage.stub.GetLeaderboard(run_pb2.GetLeaderboardRequest(run=created.name))
    top = board.entries[0].model_result
    assert top.job_type == "ensemble" and len(top.ensemble_members) == 2, "in the BASIC view too"
    listed = await storage.stub.ListModelResults(run_pb2.ListModelResultsRequest(run=created.name))
    assert [(r.sample_rows, r.job_type) for r in listed.model_results] == [
        (120, "portfolio"),
        (480, "guided"),
        (480, "ensemble"),
    ]
    assert not listed.model_results[0].ensemble_members
    bad = result(0.9)
    bad.ensemble_members.add(model_result=members[0].name, weight=1.5)
    error = await invalid(
        storage.stub.BatchCreateModelResults(pb.BatchCreateModelResultsRequest(run=created.name, model_results=[bad]))
    )
    assert status.field_violations(error)[0].field == "model_results[0].ensemble_members[0]"


async def test_run_notes_come_with_state_changes_and_heartbeats(storage):
    created = await run(storage)
    assert list(created.notes) == [] and created.models_stopped == 0
    running = await storage.stub.UpdateRunState(
        pb.UpdateRunStateRequest(
            name=created.name,
            expected_states=[c.RUN_STATE_PENDING],
            state=c.RUN_STATE_RUNNING,
            runner_id="r1",
            add_notes=["3-fold cross-validation instead of 5", "classes 'z' (1 row) kept whole in training"],
        )
    )
    assert len(running.notes) == 2
    beat = await storage.stub.HeartbeatRun(
        pb.HeartbeatRunRequest(name=created.name, runner_id="r1", add_notes=["guided search failed: exploring"])
    )
    assert list(beat.notes)[1:] == ["classes 'z' (1 row) kept whole in training", "guided search failed: exploring"]
    got = await storage.stub.GetRun(run_pb2.GetRunRequest(name=created.name))
    assert got.notes == beat.notes
    # Refused whole, with the field named: an over-long note, an empty one, too many at once.
    for notes, field, text in (
        (["x" * 501], "add_notes[0]", "at most 500"),
        (["ok", " "], "add_notes[1]", "empty"),
        ([f"n{i}" for i in range(51)], "add_notes", "at most 50"),
    ):
        error = await invalid(
            storage.stub.HeartbeatRun(pb.HeartbeatRunRequest(name=created.name, runner_id="r1", add_notes=notes))
        )
        assert status.field_violations(error)[0].field == field and text in error.details()
    error = await invalid(
        storage.stub.UpdateRunState(
            pb.UpdateRunStateRequest(
                name=created.name,
                expected_states=[c.RUN_STATE_RUNNING],
                state=c.RUN_STATE_FAILED,
                add_notes=["y" * 501],
            )
        )
    )
    assert status.field_violations(error)[0].field == "add_notes[0]"
    unchanged = await storage.stub.GetRun(run_pb2.GetRunRequest(name=created.name))
    assert unchanged.state == c.RUN_STATE_RUNNING and len(unchanged.notes) == 3
    # A run keeps 50 notes; past that the last one says more were not kept (no refusal mid-run).
    for start in range(3, 60, 10):
        more = [f"note {i}" for i in range(start, start + 10)]
        beat = await storage.stub.HeartbeatRun(
            pb.HeartbeatRunRequest(name=created.name, runner_id="r1", add_notes=more)
        )
    assert len(beat.notes) == 50 and beat.notes[48] == "note 48" and "not kept" in beat.notes[49]
    done = await storage.stub.UpdateRunState(
        pb.UpdateRunStateRequest(
            name=created.name,
            expected_states=[c.RUN_STATE_RUNNING],
            state=c.RUN_STATE_SUCCEEDED,
            add_notes=["the ensemble could not be built"],
        )
    )
    assert done.notes == beat.notes and done.state == c.RUN_STATE_SUCCEEDED


# ------------------------------------------------------- models and artifacts


async def artifact_stream(data: bytes, kind: str = "model/joblib"):
    yield pb.WriteArtifactRequest(header=pb.WriteArtifactHeader(kind=kind))
    for start in range(0, len(data), 1 << 20):
        yield pb.WriteArtifactRequest(chunk=data[start : start + (1 << 20)])


async def test_trained_model_with_a_large_artifact(storage):
    created = await run(storage)
    stored = await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(
            run=created.name, model_results=[result(0.8), result(None, R.OUTCOME_TIMED_OUT)]
        )
    )
    good, timed_out = stored.model_results
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.CreateTrainedModel(
            pb.CreateTrainedModelRequest(trained_model=model_pb2.TrainedModel(model_result=timed_out.name))
        )
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    model = await storage.stub.CreateTrainedModel(
        pb.CreateTrainedModelRequest(trained_model=model_pb2.TrainedModel(model_result=good.name))
    )
    assert model.state == model_pb2.TrainedModel.STATE_TRAINING and model.task == c.TASK_CLASSIFICATION

    payload = bytes(range(256)) * 5000  # 1.28 MB: over the inline limit
    art = await storage.stub.WriteArtifact(artifact_stream(payload))
    assert art.size_bytes == len(payload) and art.storage_location == dataset_pb2.Dataset.STORAGE_LOCATION_BLOB
    update = model_pb2.TrainedModel(
        name=model.name, state=model_pb2.TrainedModel.STATE_READY, artifact=art.name, classes=["no", "yes"]
    )
    ready = await storage.stub.UpdateTrainedModel(
        pb.UpdateTrainedModelRequest(
            trained_model=update, update_mask=field_mask_pb2.FieldMask(paths=["state", "artifact", "classes"])
        )
    )
    assert ready.state == model_pb2.TrainedModel.STATE_READY and ready.artifact_sha256 == art.sha256
    assert list(ready.classes) == ["no", "yes"]
    messages = [m async for m in storage.stub.ReadArtifact(pb.ReadArtifactRequest(name=art.name))]
    assert messages[0].artifact == art
    assert b"".join(m.chunk for m in messages[1:]) == payload
    blobs_before = len(storage.blob_keys())
    assert blobs_before >= 1
    # Deleting the experiment removes the model, its artifact row and its blob.
    await storage.stub.UpdateRunState(
        pb.UpdateRunStateRequest(name=created.name, expected_states=[c.RUN_STATE_PENDING], state=c.RUN_STATE_CANCELLED)
    )
    await storage.stub.DeleteExperiment(experiment_pb2.DeleteExperimentRequest(name=created.experiment))
    assert storage.count(schema.TrainedModel) == 0 and storage.count(schema.Artifact) == 0
    assert len(storage.blob_keys()) == blobs_before - 1


async def test_results_keep_their_predictions_artifact_until_the_experiment_goes(storage):
    created = await run(storage)
    art = await storage.stub.WriteArtifact(artifact_stream(b"\x93NUMPY" * 10, "predictions/npz"))
    kept = result(0.8)
    kept.predictions_artifact = art.name
    stored = await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[kept, result(0.7)])
    )
    assert [r.predictions_artifact for r in stored.model_results] == [art.name, ""]
    got = await storage.stub.GetModelResult(run_pb2.GetModelResultRequest(name=stored.model_results[0].name))
    assert got.predictions_artifact == art.name
    # Another tenant's artifact, or none by that name, is refused whole: no result stored.
    missing = result(0.9)
    missing.predictions_artifact = "artifacts/nope"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.BatchCreateModelResults(
            pb.BatchCreateModelResultsRequest(run=created.name, model_results=[result(0.6), missing])
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND and "predictions_artifact" in caught.value.details()
    assert storage.count(schema.ModelResult) == 2
    await storage.stub.UpdateRunState(
        pb.UpdateRunStateRequest(name=created.name, expected_states=[c.RUN_STATE_PENDING], state=c.RUN_STATE_CANCELLED)
    )
    await storage.stub.DeleteExperiment(experiment_pb2.DeleteExperimentRequest(name=created.experiment))
    assert storage.count(schema.Artifact) == 0


# ------------------------------------------------------------------ event log


def event(run_name: str, experiment: str, sequence: int) -> event_pb2.Event:
    return event_pb2.Event(
        run=run_name,
        experiment=experiment,
        sequence=sequence,
        type=event_pb2.EVENT_TYPE_STOP_REQUESTED,
        stop_requested=event_pb2.StopRequested(reason=c.STOP_REASON_USER, message=f"#{sequence}"),
    )


async def test_event_log_sequences_and_reads(storage):
    created = await run(storage)
    other = await run(storage)
    appended = await storage.stub.AppendEvents(
        pb.AppendEventsRequest(events=[event(created.name, created.experiment, i) for i in (1, 2, 3)])
    )
    positions = [e.global_sequence for e in appended.events]
    assert positions == sorted(positions) and len(set(positions)) == 3
    await storage.stub.AppendEvents(pb.AppendEventsRequest(events=[event(other.name, other.experiment, 1)]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.AppendEvents(pb.AppendEventsRequest(events=[event(created.name, created.experiment, 3)]))
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.AppendEvents(pb.AppendEventsRequest(events=[event(created.name, created.experiment, 5)]))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    after = await storage.stub.ListEvents(pb.ListEventsRequest(run=created.name, after_sequence=1))
    assert [(e.sequence, e.stop_requested.message) for e in after.events] == [(2, "#2"), (3, "#3")]
    assert after.events[0].global_sequence == positions[1]
    everything = await storage.stub.ListEvents(pb.ListEventsRequest(page_size=3))
    assert len(everything.events) == 3 and everything.has_more
    assert everything.first_kept_global_sequence == positions[0]
    got = await storage.stub.GetRun(run_pb2.GetRunRequest(name=created.name))
    assert got.last_sequence == 3


def with_id(message: event_pb2.Event, event_id: str) -> event_pb2.Event:
    message.id = event_id
    return message


async def test_an_event_id_is_stored_once_per_tenant(storage):
    """A repeated id (a Publish retried after its answer was lost) gets the
    stored event back and takes no sequence: the run's sequences stay
    contiguous, and the new events after it are numbered without it."""
    created = await run(storage)
    ev = functools.partial(event, created.name, created.experiment)
    first = await storage.stub.AppendEvents(pb.AppendEventsRequest(events=[with_id(ev(1), "a"), with_id(ev(2), "b")]))
    assert list(first.already_stored) == [False, False]
    # The notifier numbers as if every event were new: b (again) 3, c 4, c (again, same call) 5.
    again = await storage.stub.AppendEvents(
        pb.AppendEventsRequest(events=[with_id(ev(3), "b"), with_id(ev(4), "c"), with_id(ev(5), "c")])
    )
    assert list(again.already_stored) == [True, False, True]
    assert [(e.id, e.sequence) for e in again.events] == [("b", 2), ("c", 3), ("c", 3)]
    assert again.events[0].global_sequence == first.events[1].global_sequence
    assert again.events[0].stop_requested.message == "#2", "the stored event, not the one sent again"
    assert again.events[2].global_sequence == again.events[1].global_sequence
    listed = await storage.stub.ListEvents(pb.ListEventsRequest(run=created.name))
    assert [(e.id, e.sequence) for e in listed.events] == [("a", 1), ("b", 2), ("c", 3)]
    assert listed.events[2].stop_requested.message == "#4", "numbered without the repeated event: 3, not 4"
    assert (await storage.stub.GetRun(run_pb2.GetRunRequest(name=created.name))).last_sequence == 3
    # An event without an id gets one; an id that is no id is refused.
    given = await storage.stub.AppendEvents(pb.AppendEventsRequest(events=[ev(4)]))
    assert len(given.events[0].id) == 32 and not given.already_stored[0]
    await invalid(storage.stub.AppendEvents(pb.AppendEventsRequest(events=[with_id(ev(5), "no spaces")])))

    # The repository: the stored row back, no sequence used; the unique index behind it.
    store = storage.servicer.store
    row = {"run_id": created.name.removeprefix("runs/"), "event_type": event_pb2.EVENT_TYPE_STOP_REQUESTED}
    repeated = store.append_events("default", [row | {"sequence": 5, "payload": b"x", "event_id": "a"}])
    assert repeated[0].already_stored and repeated[0].sequence == 1
    assert repeated[0].global_sequence == first.events[0].global_sequence
    assert event_pb2.Event.FromString(repeated[0].payload).stop_requested.message == "#1"
    new = store.append_events("default", [row | {"sequence": 5, "payload": ev(5).SerializeToString(), "event_id": "d"}])
    assert not new[0].already_stored and new[0].sequence == 5
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            insert(schema.Event).values(
                tenant="default",
                run_id=row["run_id"],
                experiment_pk=connection.scalar(select(schema.Run.experiment_pk).limit(1)),
                run_sequence=99,
                event_type=1,
                payload=b"",
                create_time=schema.utcnow(),
                event_id="a",
            )
        )
    # Another tenant has ids of its own.
    acme = storage.tenant("acme")
    data = await storage.stub.UploadDataset(upload_stream(mixed_csv(50)), metadata=acme)
    spec = experiment_pb2.Experiment(dataset=data.name, target_column="label")
    exp = await storage.stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment=spec), metadata=acme)
    theirs = await storage.stub.CreateRun(
        pb.CreateRunRequest(run=run_pb2.Run(experiment=exp.name, stop_conditions=BOUND)), metadata=acme
    )
    other = await storage.stub.AppendEvents(
        pb.AppendEventsRequest(events=[with_id(event(theirs.name, theirs.experiment, 1), "a")]), metadata=acme
    )
    assert not other.already_stored[0] and other.events[0].sequence == 1


async def test_subscription_records_and_api_keys(storage):
    created = await run(storage)
    record = pb.SubscriptionRecord(
        subscription=event_pb2.Subscription(run=created.name, webhook_url="https://example.test/hook"),
        token_sha256="a" * 64,
        webhook_secret="s3cret",
    )
    stored = await storage.stub.CreateSubscriptionRecord(pb.CreateSubscriptionRecordRequest(record=record))
    assert stored.subscription.state == event_pb2.Subscription.STATE_ACTIVE
    by_token = await storage.stub.GetSubscriptionRecord(pb.GetSubscriptionRecordRequest(token_sha256="a" * 64))
    assert by_token.subscription.name == stored.subscription.name and by_token.webhook_secret == "s3cret"
    key = await storage.stub.CreateApiKey(
        pb.CreateApiKeyRequest(api_key=pb.ApiKey(tenant="acme", display_name="ci", prefix="ak_12"), key_sha256="b" * 64)
    )
    found = await storage.stub.LookupApiKey(pb.LookupApiKeyRequest(key_sha256="b" * 64))
    assert found.tenant == "acme" and not found.HasField("revoke_time")
    revoked = await storage.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.name))
    assert revoked.HasField("revoke_time")


async def test_a_tie_goes_to_the_earlier_position_whatever_the_arrival_order(storage):
    """Parallel workers finish in any order; the run's best and the leaderboard's
    first entry agree on a tie: the earlier position."""
    created = await run(storage)
    later, earlier, last = result(0.9), result(0.9), result(0.9)
    later.index, earlier.index, last.index = 6, 5, 7
    for one in (later, earlier, last):
        await storage.stub.BatchCreateModelResults(
            pb.BatchCreateModelResultsRequest(run=created.name, model_results=[one])
        )
    board = await storage.stub.GetLeaderboard(run_pb2.GetLeaderboardRequest(run=created.name))
    best = (await storage.stub.GetRun(run_pb2.GetRunRequest(name=created.name))).best_model_result
    assert [e.model_result.index for e in board.entries] == [5, 6, 7]
    assert best == board.entries[0].model_result.name
    both = await storage.stub.BatchCreateModelResults(  # within one batch too
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[result(0.95), result(0.95)])
    )
    first = min(both.model_results, key=lambda r: r.index)
    assert (await storage.stub.GetRun(run_pb2.GetRunRequest(name=created.name))).best_model_result == first.name
