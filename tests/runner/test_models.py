"""Train, test and predict through the runner service (real processes): the
refit on the training rows, holdout scores, predictions in input order, and
clear refusals of bad input and altered model files."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, model_pb2, run_pb2, runner_service_pb2, storage_service_pb2
from tests.runner.conftest import Stack, mixed_table, sklearn_csv, start_stack, stop_stack, to_csv

pytestmark = pytest.mark.slow
READY = model_pb2.TrainedModel.STATE_READY


def best_result(stack: Stack, data: bytes, target: str, families: list[str], **fields: object) -> run_pb2.ModelResult:
    experiment = stack.experiment(data, target, allowed_model_families=families, **fields)
    run = stack.new_run(experiment, workers=2, max_models=2)
    stack.execute(run)
    end = stack.wait_end(run)
    assert end.state == c.RUN_STATE_SUCCEEDED
    return stack.storage.GetModelResult(run_pb2.GetModelResultRequest(name=end.best_model_result), timeout=30)


def train(
    stack: Stack, result: run_pb2.ModelResult, wait: bool = True, includes_holdout: bool = False
) -> model_pb2.TrainedModel:
    wanted = model_pb2.TrainedModel(model_result=result.name, includes_holdout=includes_holdout)
    model = stack.storage.CreateTrainedModel(
        storage_service_pb2.CreateTrainedModelRequest(trained_model=wanted), timeout=30
    )
    started = stack.runner.ExecuteTraining(runner_service_pb2.ExecuteTrainingRequest(name=model.name), timeout=30)
    assert started.state == model_pb2.TrainedModel.STATE_TRAINING
    if not wait:
        return started
    deadline = time.monotonic() + 120
    while (current := get_model(stack, model.name)).state == model_pb2.TrainedModel.STATE_TRAINING:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return current


def get_model(stack: Stack, name: str) -> model_pb2.TrainedModel:
    return stack.storage.GetTrainedModel(model_pb2.GetTrainedModelRequest(name=name), timeout=30)


def holdout_test(stack: Stack, name: str) -> model_pb2.HoldoutEvaluation:
    return stack.runner.TestModel(model_pb2.TestModelRequest(name=name), timeout=60)


def predict_csv(stack: Stack, name: str, frame: pd.DataFrame) -> model_pb2.PredictResponse:
    return stack.runner.Predict(model_pb2.PredictRequest(name=name, csv=to_csv(frame)), timeout=60)


def error_of(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.fixture(scope="module")
def classifier(stack: Stack) -> Iterator[tuple[model_pb2.TrainedModel, pd.DataFrame]]:
    frame = mixed_table(300)
    result = best_result(stack, to_csv(frame), "label", ["RandomForestClassifier"], seed=4)
    yield train(stack, result), frame


def test_training_refits_on_every_training_row(stack: Stack, classifier):
    model, _ = classifier
    assert model.state == READY, model.error_message
    assert model.training_rows == 240  # 300 rows, 20 % held out
    assert list(model.classes) == ["no", "yes"]
    assert [f.name for f in model.feature_columns] == ["amount: eur", "colour[main]", "note", "ratio,x"]
    assert model.feature_columns[0].type == c.COLUMN_TYPE_NUMERIC
    assert model.artifact and len(model.artifact_sha256) == 64 and model.artifact_size_bytes > 0
    assert model.fit_time_seconds > 0
    trained = [e.model_trained for e in stack.events(run_pb2.Run(name=model.run)) if e.HasField("model_trained")]
    assert [(t.trained_model, t.state) for t in trained] == [(model.name, READY)]


def test_a_model_fitted_with_the_holdout_has_every_row_and_refuses_a_holdout_test(stack: Stack, classifier):
    model, frame = classifier
    result = stack.storage.GetModelResult(run_pb2.GetModelResultRequest(name=model.model_result), timeout=30)
    everything = train(stack, result, includes_holdout=True)
    assert everything.state == READY, everything.error_message
    assert everything.includes_holdout and everything.training_rows == 300
    error = error_of(holdout_test, stack, everything.name)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "include_holdout" in error.details()
    assert not get_model(stack, everything.name).HasField("holdout_evaluation")
    answer = predict_csv(stack, everything.name, frame.drop(columns=["label"]).head(20))
    assert len(answer.predictions) == 20


def test_holdout_scores_are_stored_and_published(stack: Stack, classifier):
    model, _ = classifier
    evaluation = holdout_test(stack, model.name)
    values = {m.metric: m.value for m in evaluation.metrics}
    assert set(values) == {
        c.METRIC_ACCURACY,
        c.METRIC_BALANCED_ACCURACY,
        c.METRIC_F1_MACRO,
        c.METRIC_ROC_AUC,
        c.METRIC_LOG_LOSS,
    }
    assert values[c.METRIC_ACCURACY] > 0.7 and values[c.METRIC_ROC_AUC] > 0.7
    assert evaluation.row_count == 60
    assert list(evaluation.confusion_matrix.labels) == ["no", "yes"]
    assert sum(sum(r.counts) for r in evaluation.confusion_matrix.rows) == 60
    assert get_model(stack, model.name).holdout_evaluation == evaluation
    tested = [e for e in stack.events(run_pb2.Run(name=model.run)) if e.type == event_pb2.EVENT_TYPE_MODEL_TESTED]
    assert tested[-1].model_tested.evaluation == evaluation


def test_predict_csv_and_records_in_input_order(stack: Stack, classifier):
    model, frame = classifier
    rows = frame.drop(columns=["label"]).iloc[:50]
    shuffled = rows[list(reversed(rows.columns))].assign(extra="ignored")
    by_csv = predict_csv(stack, model.name, shuffled)
    assert list(by_csv.classes) == ["no", "yes"]
    assert len(by_csv.predictions) == 50
    assert all(p.label in ("no", "yes") and abs(sum(p.probabilities) - 1) < 1e-6 for p in by_csv.predictions)
    structs = []
    for record in rows.to_dict(orient="records"):
        struct = struct_pb2.Struct()
        struct.update({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()})
        structs.append(struct)
    by_records = stack.runner.Predict(
        model_pb2.PredictRequest(name=model.name, records=model_pb2.PredictRecords(rows=structs)), timeout=60
    )
    assert [p.label for p in by_records.predictions] == [p.label for p in by_csv.predictions]
    reversed_rows = predict_csv(stack, model.name, rows.iloc[::-1])
    assert [p.label for p in reversed_rows.predictions] == [p.label for p in by_csv.predictions][::-1]


def test_predict_stream_cuts_anywhere_and_answers_in_blocks(stack: Stack, classifier):
    model, frame = classifier
    rows = pd.concat([frame.drop(columns=["label"])] * 70, ignore_index=True)  # 21,000 rows: 3 blocks
    data = to_csv(rows)

    def requests() -> Iterator[model_pb2.PredictStreamRequest]:
        yield model_pb2.PredictStreamRequest(header=model_pb2.PredictStreamHeader(name=model.name))
        for start in range(0, len(data), 65_537):  # cuts inside lines and quoted fields
            yield model_pb2.PredictStreamRequest(csv_chunk=data[start : start + 65_537])

    blocks = list(stack.runner.PredictStream(requests(), timeout=120))
    assert [b.first_row for b in blocks] == [0, 10_000, 20_000]
    assert list(blocks[0].classes) == ["no", "yes"] and not blocks[1].classes
    labels = [p.label for b in blocks for p in b.predictions]
    assert len(labels) == 21_000
    assert labels[:300] == labels[300:600]  # the same rows, the same answers, in order


def test_missing_columns_and_wrong_types_are_refused(stack: Stack, classifier):
    model, frame = classifier
    rows = frame.drop(columns=["label"]).iloc[:5]
    error = error_of(predict_csv, stack, model.name, rows.drop(columns=["note", "ratio,x"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "missing columns the model needs: note, ratio,x" in error.details()
    bad = rows.copy()
    bad["amount: eur"] = bad["amount: eur"].astype(object)
    bad.iloc[3, 0] = "lots"
    error = error_of(predict_csv, stack, model.name, bad)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "column 'amount: eur' takes numbers; row 3 has 'lots'" in error.details()
    error = error_of(stack.runner.Predict, model_pb2.PredictRequest(name=model.name), timeout=30)
    assert "csv or records" in error.details()


def test_unknown_models_and_test_before_train(stack: Stack, classifier):
    model, _ = classifier
    error = error_of(holdout_test, stack, "trainedModels/absent")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = error_of(predict_csv, stack, "models/x", pd.DataFrame({"a": [1]}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    result = stack.storage.GetModelResult(run_pb2.GetModelResultRequest(name=model.model_result), timeout=30)
    pending = train(stack, result, wait=False)
    error = error_of(holdout_test, stack, pending.name)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "still training" in error.details()
    error = error_of(
        stack.runner.ExecuteTraining, runner_service_pb2.ExecuteTrainingRequest(name=model.name), timeout=30
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "STATE_READY" in error.details()


def tamper(stack: Stack, sha256: str) -> None:
    """Change a stored model file's bytes behind storage's back."""
    data = Path(stack.env["AUTOML_DATA_DIR"])
    with sqlite3.connect(data / "automl.db") as db:
        inline, key = db.execute("SELECT inline_data, blob_key FROM contents WHERE sha256 = ?", (sha256,)).fetchone()
        if key:
            path = data / "blobs" / key
            path.write_bytes(b"tampered" + path.read_bytes()[8:])
        else:
            db.execute("UPDATE contents SET inline_data = ? WHERE sha256 = ?", (b"tampered" + inline[8:], sha256))


def test_an_altered_model_file_is_never_loaded(stack: Stack):
    result = best_result(stack, sklearn_csv("iris"), "target", ["LogisticRegression"])
    model = train(stack, result)
    assert model.state == READY
    tamper(stack, model.artifact_sha256)
    error = error_of(holdout_test, stack, model.name)
    assert error.code() == grpc.StatusCode.DATA_LOSS and "refusing to load it" in error.details()
    status = stack.runner.GetRunnerStatus(runner_service_pb2.GetRunnerStatusRequest(), timeout=10)
    assert status.runner_id  # the runner is still there


class CreatesAFile:
    """Unpickling this opens (creates) a file: what a forged model file could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def point_at(stack: Stack, model: model_pb2.TrainedModel, payload: bytes) -> None:
    """Store `payload` as a model file and make `model` use it, as anyone who
    can reach storage could."""

    def chunks():
        yield storage_service_pb2.WriteArtifactRequest(
            header=storage_service_pb2.WriteArtifactHeader(kind="model/joblib")
        )
        yield storage_service_pb2.WriteArtifactRequest(chunk=payload)

    artifact = stack.storage.WriteArtifact(chunks(), timeout=30)
    stack.storage.UpdateTrainedModel(
        storage_service_pb2.UpdateTrainedModelRequest(
            trained_model=model_pb2.TrainedModel(name=model.name, artifact=artifact.name),
            update_mask=field_mask_pb2.FieldMask(paths=["artifact"]),
        ),
        timeout=30,
    )


def test_only_model_files_sealed_by_the_runner_are_unpickled(stack: Stack, tmp_path: Path):
    import joblib

    from services.runner import signing

    frame = pd.read_csv(io.BytesIO(sklearn_csv("iris")))
    result = best_result(stack, sklearn_csv("iris"), "target", ["LogisticRegression"], seed=5)
    marker = tmp_path / "created-by-a-pickle"
    forged = io.BytesIO()
    joblib.dump({"model": CreatesAFile(marker)}, forged)
    for payload, says in [
        (forged.getvalue(), "carries no runner seal"),
        (signing.MAGIC + bytes(32) + forged.getvalue(), "does not match this runner's key"),
    ]:
        model = train(stack, result)
        assert model.state == READY, model.error_message
        point_at(stack, model, payload)
        rows = frame.drop(columns=["target"]).head(3)
        for error in (error_of(predict_csv, stack, model.name, rows), error_of(holdout_test, stack, model.name)):
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and says in error.details()
        assert not marker.exists()
    # The runner's own files still load, in a worker process of the runner's.
    model = train(stack, result)
    assert len(predict_csv(stack, model.name, frame.drop(columns=["target"]).head(3)).predictions) == 3


def test_regression_model_scores_and_values(stack: Stack):
    result = best_result(stack, sklearn_csv("diabetes"), "target", ["Ridge"], task=c.TASK_REGRESSION)
    model = train(stack, result)
    assert model.state == READY and not model.classes
    evaluation = holdout_test(stack, model.name)
    assert {m.metric for m in evaluation.metrics} == {c.METRIC_RMSE, c.METRIC_MAE, c.METRIC_R2}
    assert not evaluation.confusion_matrix.labels
    rows = pd.read_csv(io.BytesIO(sklearn_csv("diabetes"))).drop(columns=["target"]).iloc[:10]
    answers = predict_csv(stack, model.name, rows)
    assert len(answers.predictions) == 10 and len({p.value for p in answers.predictions}) > 1
    assert not answers.classes


@pytest.fixture(scope="module")
def sampling_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A runner that searches tables of more than 2,000 cells on a sample."""
    running = start_stack(tmp_path_factory.mktemp("sampling"), {"AUTOML_RUNNER_SAMPLE_CELLS": "2000"})
    try:
        yield running
    finally:
        stop_stack(running)


def test_a_large_table_is_searched_on_a_sample_and_refitted_on_all(sampling_stack: Stack):
    s = sampling_stack
    result = best_result(s, to_csv(mixed_table(3000)), "label", ["RandomForestClassifier"], seed=2)
    run = run_pb2.Run(name=result.run)
    started = next(e.run_started for e in s.events(run) if e.HasField("run_started"))
    assert abs(started.search_rows - 500) < 70 and abs(started.holdout_rows - 600) < 70  # 2,000 cells / 4 features
    chunks = s.storage.ReadArtifact(storage_service_pb2.ReadArtifactRequest(name=started.split_artifact))
    split = json.loads(b"".join(m.chunk for m in chunks))
    assert split["sampled"] and split["search_row_count"] == started.search_rows
    assert split["training_row_count"] + split["holdout_count"] == 3000
    model = train(s, result)
    assert model.state == READY and model.training_rows == split["training_row_count"]
    assert holdout_test(s, model.name).row_count == split["holdout_count"]
    everything = train(s, result, includes_holdout=True)
    assert everything.state == READY and everything.training_rows == 3000, everything.error_message


def test_records_without_a_json_form_are_invalid_argument_naming_the_row():
    """A Struct row holding NaN or Infinity (gRPC can send it, JSON cannot)
    was INTERNAL (json_format's ValueError; found by fuzzing)."""
    from google.protobuf import struct_pb2

    from automl.common.errors import InvalidArgument
    from automl.v1 import model_pb2
    from services.runner.models import records

    good = struct_pb2.Struct(fields={"a": struct_pb2.Value(number_value=1.5)})
    bad = struct_pb2.Struct(fields={"a": struct_pb2.Value(number_value=float("nan"))})
    assert records(model_pb2.PredictRecords(rows=[good])) == [{"a": 1.5}]
    with pytest.raises(InvalidArgument) as caught:
        records(model_pb2.PredictRecords(rows=[good, bad]))
    assert caught.value.violations[0].field == "records.rows[1]"
    assert "NaN" in caught.value.message


# ----------------------------------------------- the quick path of small inputs

QUICK_CELLS = [
    "",
    "NA",
    "N/A",
    "nan",
    "NaN",
    "null",
    "None",
    "-1",
    "-1.0",
    "-1.00",
    "1.5",
    " 2 ",
    "1e5",
    "1E-3",
    "1_000",
    "abc",
    "x y",
    'say "hi"',
    "a,b",
    "a;b",
    "0.1234567890123456789",
    "1234567890.12345",
    "007",
    "+.5",
    "5.",
    ".",
    "-0",
    "1e400",
    "1e-400",
    "inf",
    "-Infinity",
    "True",
    "é€",
    "\t",
    "  ",
    "0x10",
    "١٢",
    "3.0",
    "12345678901234567",
]


def quick_model(numeric: dict[str, bool]) -> object:
    from services.runner import predicting

    return predicting.Loaded(
        model=None,
        features={f"f{i}": name for i, name in enumerate(numeric)},
        numeric=numeric,
        classification=True,
        classes=["no", "yes"],
        csv_options={"delimiter": ",", "encoding": "utf-8", "na_values": [], "quote_char": '"'},
    )


def full_path(make_frame, loaded, field: str) -> pd.DataFrame | str:
    """What the full (pandas) path makes of an input: its features, or its error."""
    from automl.common.errors import AutoMLError
    from services.runner import predicting

    try:
        return predicting.features(make_frame(), loaded, field)
    except AutoMLError as exc:
        return f"{type(exc).__name__}: {exc.message}"


def quick_frame(columns) -> pd.DataFrame:
    import pickle

    shipped = pickle.loads(pickle.dumps(columns))  # as the model's worker gets it
    assert isinstance(shipped, pd.DataFrame)
    pd.testing.assert_frame_equal(shipped, columns.frame())
    return shipped


def csv_text(rng: np.random.Generator, header: list[str], rows: list[list[str]], delimiter: str, quote: str) -> str:
    def cell(value: str) -> str:
        if any(ch in value for ch in (delimiter, quote, "\n")) or rng.random() < 0.15:
            return quote + value.replace(quote, quote * 2) + quote
        return value

    lines = [delimiter.join(cell(v) for v in line) for line in [header, *rows]]
    flaw = rng.integers(0, 12)
    if flaw == 0 and len(lines) > 1:  # a blank line
        lines.insert(int(rng.integers(1, len(lines))), "")
    elif flaw == 1:  # one more field on a row
        lines[-1] += delimiter + "7"
    elif flaw == 2:  # a stray quote inside a field
        lines[-1] = lines[-1][:1] + quote + lines[-1][1:]
    end = "\r\n" if flaw == 3 else "\n"
    text = end.join(lines) + ("" if flaw == 4 else end)
    return ("\ufeff" + text) if flaw == 5 else text


def test_the_quick_path_of_small_csv_agrees_with_the_full_one():
    """Every small CSV the quick path takes gives the very features the
    pandas path gives (same values, dtypes, names, order); every CSV the
    pandas path refuses or reads otherwise, the quick path leaves to it."""
    from automl.v1 import common_pb2 as c
    from services.runner import predicting

    rng = np.random.default_rng(7)
    taken = refused = 0
    for case in range(1500):
        names = ["amount: eur", "colour[main]", "note", "ratio,x", "NA", 'q"x', "a.1"]
        chosen = list(rng.choice(names, int(rng.integers(1, 5)), replace=False))
        loaded = quick_model({name: bool(rng.random() < 0.5) for name in chosen})
        header = list(chosen)
        if rng.random() < 0.1:  # a column the model needs is absent
            header.pop(int(rng.integers(0, len(header))))
        header += [f"extra{i}" for i in range(int(rng.integers(0, 2)))]
        if rng.random() < 0.05 and header:
            header.append(header[0])  # duplicate name
        rng.shuffle(header)
        pool = QUICK_CELLS if rng.random() < 0.35 else ["1.5", "-2", "", "NA", "abc", "10", "0.25"]
        rows = [[str(rng.choice(pool)) for _ in header] for _ in range(int(rng.integers(0, 4)))]
        delimiter, quote = [(",", '"'), (";", '"'), ("\t", "'"), ("|", '"')][case % 4]
        data = csv_text(rng, header, rows, delimiter, quote).encode()
        na = [[], ["-1"], ["?", ""], ["NA", "nan"]][int(rng.integers(0, 4))]
        options = c.CsvOptions(delimiter=delimiter, quote_char=quote, na_values=na) if case % 3 else None
        if options is None:
            loaded.csv_options.update(delimiter=delimiter, quote_char=quote, na_values=na)
        full = full_path(lambda: predicting.frame_from_csv(data, options, loaded), loaded, "csv")  # noqa: B023
        quick = predicting.quick_csv(data, options, loaded)
        columns = predicting.quick_columns(*quick, loaded) if quick is not None else None
        if columns is None:
            refused += 1
            continue
        taken += 1
        assert not isinstance(full, str), (data, full)
        pd.testing.assert_frame_equal(quick_frame(columns), full, check_exact=True, obj=repr(data))
    assert taken > 250 and refused > 250, (taken, refused)


def test_the_quick_path_of_small_records_agrees_with_the_full_one():
    from automl.v1 import model_pb2
    from services.runner import predicting
    from services.runner.models import records

    rng = np.random.default_rng(11)
    clean = [None, "", "1.5", "abc", "x y", "-2", 2.0, -0.0, 1.25, 1e20, 0.1]
    tricky = [*clean, "NA", " 3 ", "1_000", True, [1], {"a": 1}, float("nan"), float("inf"), "12345678901234567", "5."]
    taken = refused = 0
    for _ in range(1500):
        chosen = list(rng.choice(["amount: eur", "colour[main]", "note", "ratio,x"], int(rng.integers(1, 4)), False))
        loaded = quick_model({name: bool(rng.random() < 0.5) for name in chosen})
        pool = clean if rng.random() < 0.6 else tricky
        message = model_pb2.PredictRecords()
        for _ in range(int(rng.integers(0, 4))):
            row = message.rows.add()
            for name in [*chosen, "extra"]:
                if rng.random() < 0.9:
                    value = pool[int(rng.integers(0, len(pool)))]
                    if isinstance(value, float) and not np.isfinite(value):
                        row.fields[name].number_value = value
                    else:
                        row.update({name: value})
        full = full_path(lambda: predicting.frame_from_records(records(message)), loaded, "records")  # noqa: B023
        quick = predicting.quick_records(message)
        columns = predicting.quick_columns(None, quick, loaded) if quick is not None else None
        if columns is None:
            refused += 1
            continue
        taken += 1
        assert not isinstance(full, str), (message, full)
        pd.testing.assert_frame_equal(quick_frame(columns), full, check_exact=True, obj=str(message))
    assert taken > 250 and refused > 250, (taken, refused)
