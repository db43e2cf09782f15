"""A whole AutoML run through the public gateway, as a user makes it: upload,
experiment, start with a stop condition, watch to the end, leaderboard,
train, test, predict, export. The four services are real processes."""

from __future__ import annotations

import csv
import io
import json

import grpc
import openpyxl
import pytest

from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, model_pb2, run_pb2
from tests.runner.conftest import seconds, shared_csv, sklearn_csv


def export(client, run, fmt) -> tuple[str, str, bytes]:
    chunks = list(
        client.stub.ExportRunResults(
            run_pb2.ExportRunResultsRequest(run=run.name, format=fmt), metadata=client.metadata, timeout=120
        )
    )
    return chunks[0].content_type, chunks[0].filename, b"".join(m.chunk for m in chunks)


def finished(events: list[event_pb2.Event]) -> event_pb2.RunFinished:
    assert events[-1].type == event_pb2.EVENT_TYPE_RUN_FINISHED, [event_pb2.EventType.Name(e.type) for e in events]
    return events[-1].run_finished


def test_whole_run_through_the_gateway(gateway_suite):
    client = gateway_suite.client()
    experiment = client.experiment(sklearn_csv("iris"), "target", seed=7)
    run = client.start(experiment, max_models=6)
    assert run.state in (c.RUN_STATE_PENDING, c.RUN_STATE_RUNNING)

    snapshot, events = client.watch(run, after=0)
    assert snapshot.run.name == run.name
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(events) + 1))  # no gap, no duplicate
    end = finished(events)
    assert end.state == c.RUN_STATE_SUCCEEDED
    assert end.stop_reason == c.STOP_REASON_MAX_MODELS

    run = client.get(run)
    assert run.models_evaluated + run.models_failed >= 6
    board = client.call("GetLeaderboard", run_pb2.GetLeaderboardRequest(run=run.name))
    assert board.entries and board.entries[0].rank == 1
    assert board.entries[0].model_result.name == run.best_model_result

    # A watch of an ended run: the snapshot, then nothing (or the replay asked for).
    snapshot, events = client.watch(run)
    assert snapshot.run.state == c.RUN_STATE_SUCCEEDED and events == []
    _, tail = client.watch(run, after=len(sequences) - 2)
    assert [e.sequence for e in tail] == sequences[-2:]

    model = client.train(run.best_model_result)
    assert model.state == model_pb2.TrainedModel.STATE_READY, model.error_message
    evaluation = client.call("TestModel", model_pb2.TestModelRequest(name=model.name), timeout=300)
    accuracy = {m.metric: m.value for m in evaluation.metrics}[c.METRIC_ACCURACY]
    assert accuracy > 0.8
    rows = b"sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
    predicted = client.call("Predict", model_pb2.PredictRequest(name=model.name, csv=rows))
    assert [p.label for p in predicted.predictions] == ["0", "2"]

    content_type, filename, body = export(client, run, run_pb2.EXPORT_FORMAT_CSV)
    assert content_type.startswith("text/csv") and filename.endswith(".csv")
    table = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(table) == run.models_evaluated + run.models_failed
    assert {"model_family", "accuracy_mean", "accuracy_std", "fit_time_seconds"} <= set(table[0])
    assert any(k.count("__") for k in table[0])  # hyper-parameters flattened into columns

    _, filename, body = export(client, run, run_pb2.EXPORT_FORMAT_XLSX)
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    assert {"results", "folds", "errors"} <= set(book.sheetnames)
    sheet = list(book["results"].iter_rows(values_only=True))
    assert len(sheet) == len(table) + 1 and sheet[0][:3] == ("index", "model_result", "model_family")

    _, _, body = export(client, run, run_pb2.EXPORT_FORMAT_JSON)
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert len(lines) == len(table) and lines[0]["folds"]


@pytest.mark.parametrize(
    ("conditions", "reason"),
    [
        ({"target_score": 0.5}, c.STOP_REASON_TARGET_SCORE),
        ({"max_duration": seconds(4)}, c.STOP_REASON_TIME_BUDGET),
        ({"no_improvement_models": 2, "max_models": 60}, c.STOP_REASON_NO_IMPROVEMENT),
    ],
    ids=["target_score", "time_budget", "no_improvement"],
)
def test_each_stop_condition_names_its_reason(gateway_suite, conditions, reason):
    client = gateway_suite.client()
    experiment = client.experiment(sklearn_csv("breast_cancer"), "target")
    run = client.start(experiment, **conditions)
    _, events = client.watch(run, after=0)
    end = finished(events)
    assert end.stop_reason == reason, end.message
    assert end.state == c.RUN_STATE_SUCCEEDED
    assert client.get(run).stop_reason == reason


def test_user_stop(gateway_suite):
    client = gateway_suite.client()
    experiment = client.experiment(sklearn_csv("breast_cancer"), "target")
    run = client.start(experiment, max_duration=seconds(120))
    stopped = client.call("StopRun", run_pb2.StopRunRequest(name=run.name))
    assert stopped.state in (c.RUN_STATE_STOPPING, c.RUN_STATE_STOPPED, c.RUN_STATE_CANCELLED)
    run = client.wait_end(run, timeout=60)
    assert run.stop_reason == c.STOP_REASON_USER
    assert run.state in (c.RUN_STATE_STOPPED, c.RUN_STATE_CANCELLED)
    again = client.call("StopRun", run_pb2.StopRunRequest(name=run.name))  # a no-op on an ended run
    assert again.state == run.state


def test_start_run_without_stop_condition_is_refused_and_leaves_no_run(gateway_suite):
    client = gateway_suite.client()
    experiment = client.experiment(sklearn_csv("iris"), "target")
    with pytest.raises(grpc.RpcError) as caught:
        client.start(experiment)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "stop_conditions" in caught.value.details()
    runs = client.call("ListRuns", run_pb2.ListRunsRequest(filter=f'experiment="{experiment.name}"'))
    assert list(runs.runs) == []


@pytest.mark.parametrize(("name", "target"), [("glass.csv", "Type"), ("titanic.csv", "Survived")])
def test_shared_datasets(gateway_suite, name, target):
    client = gateway_suite.client()
    experiment = client.experiment(shared_csv(name), target)
    run = client.start(experiment, max_models=4)
    _, events = client.watch(run, after=0)
    assert finished(events).stop_reason == c.STOP_REASON_MAX_MODELS
    run = client.get(run)
    model = client.train(run.best_model_result)
    assert model.state == model_pb2.TrainedModel.STATE_READY, model.error_message
    evaluation = client.call("TestModel", model_pb2.TestModelRequest(name=model.name), timeout=300)
    assert evaluation.row_count > 0
    _, _, body = export(client, run, run_pb2.EXPORT_FORMAT_XLSX)
    assert len(list(openpyxl.load_workbook(io.BytesIO(body), read_only=True)["results"].iter_rows())) >= 2
