"""The runner's domain logic without processes: reading and checking the
problem, scoring summaries, stop conditions, aikit model descriptions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from automl.common.errors import InvalidArgument
from automl.common.stopping import Limits, Progress, limit_reached
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, experiment_pb2
from services.runner import problem, scoring, searchable
from services.runner.candidates import describe
from tests.runner.conftest import mixed_table, seconds


def experiment(target: str = "label", task: int = c.TASK_CLASSIFICATION, **fields: object):
    fields.setdefault("primary_metric", c.METRIC_ACCURACY if task == c.TASK_CLASSIFICATION else c.METRIC_R2)
    return experiment_pb2.Experiment(
        name="experiments/e", dataset="datasets/d", target_column=target, resolved_task=task, cv_folds=3, **fields
    )


def refusal(frame: pd.DataFrame, exp: experiment_pb2.Experiment, dataset=None) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        problem.prepare(frame, dataset or dataset_pb2.Dataset(), exp)
    return caught.value


def test_mixed_table_is_split_stratified_seeded_and_sanitized():
    frame = mixed_table(300)
    made = problem.prepare(frame, dataset_pb2.Dataset(), experiment(seed=7))
    assert len(made.holdout_rows) == 60 and len(made.search_rows) == 240
    assert sorted(made.holdout_rows + made.search_rows) == list(range(300))
    assert made.y.value_counts().to_dict() == {"no": 120, "yes": 120}  # stratified
    assert list(made.columns) == ["amount_eur", "colour_main", "note", "ratio_x"]
    assert list(made.columns.values()) == ["amount: eur", "colour[main]", "note", "ratio,x"]
    again = problem.prepare(frame, dataset_pb2.Dataset(), experiment(seed=7))
    other = problem.prepare(frame, dataset_pb2.Dataset(), experiment(seed=8))
    assert again.holdout_rows == made.holdout_rows != other.holdout_rows


def test_rows_without_target_are_left_out_and_counted():
    frame = mixed_table(100)
    frame.loc[[3, 5], "label"] = np.nan
    made = problem.prepare(frame, dataset_pb2.Dataset(), experiment())
    assert made.rows_without_target == 2
    assert 3 not in made.holdout_rows + made.search_rows


def test_identifier_and_excluded_columns_are_not_features():
    frame = mixed_table(100).assign(row_id=range(100))
    dataset = dataset_pb2.Dataset(
        columns=[dataset_pb2.ColumnProfile(name="row_id", inferred_type=c.COLUMN_TYPE_IDENTIFIER)]
    )
    made = problem.prepare(frame, dataset, experiment(excluded_columns=["note"]))
    assert "row_id" not in made.X and "note" not in made.X
    assert made.dropped == {"note": "excluded by the experiment", "row_id": "an identifier (distinct on every row)"}


def test_small_classes_are_adapted_to_not_refused():
    frame = mixed_table(100)
    frame.loc[0, "label"] = "maybe"
    frame.loc[[1, 2, 3], "label"] = "rare"
    made = problem.prepare(frame, dataset_pb2.Dataset(), experiment())
    # Kept whole in training (no holdout row), and the folds follow the smallest class.
    assert made.y.value_counts()[["maybe", "rare"]].tolist() == [1, 3]
    assert made.folds == 2
    assert "'rare' (3 rows), 'maybe' (1 row)" in made.notes[0] and "kept whole in training" in made.notes[0]
    assert made.notes[1].startswith("2-fold cross-validation instead of 3")


def test_a_true_false_target_with_a_small_class_is_adapted_too():
    """A True/False column is read as booleans: the small class's note must
    not take its list of labels [True] for a mask (it raised IndexError)."""
    frame = mixed_table(100).assign(label=False)
    frame.loc[[0, 1, 2], "label"] = True
    made = problem.prepare(frame, dataset_pb2.Dataset(), experiment())
    assert made.y.value_counts()[True] == 3
    assert "'True' (3 rows)" in made.notes[0] and "kept whole in training" in made.notes[0]


def test_a_small_class_gives_the_holdout_what_it_can_spare():
    frame = mixed_table(200)
    frame.loc[range(4), "label"] = "rare"  # 4 rows: 1 to the holdout, 3 stay for 3 folds
    made = problem.prepare(frame, dataset_pb2.Dataset(), experiment())
    assert (made.y == "rare").sum() == 3 and (made.holdout_y == "rare").sum() == 1
    assert made.folds == 3 and made.notes == []


def test_one_class_is_refused():
    frame = mixed_table(50).assign(label="yes")
    assert "one class only" in refusal(frame, experiment()).message


def test_a_target_without_values_is_refused():
    frame = mixed_table(50).assign(label=np.nan)
    assert "no value on any row" in refusal(frame, experiment()).message


def test_regression_on_a_text_target_is_refused():
    error = refusal(mixed_table(50), experiment(task=c.TASK_REGRESSION))
    assert error.violations[0].field == "experiment.task"
    assert "holds text such as" in error.message


def test_constant_features_are_refused():
    frame = pd.DataFrame({"a": [1] * 60, "b": ["x"] * 60, "label": ["p", "q"] * 30})
    assert "every feature column is constant" in refusal(frame, experiment()).message


def test_no_feature_left_is_refused():
    frame = pd.DataFrame({"a": range(60), "label": ["p", "q"] * 30})
    error = refusal(frame, experiment(excluded_columns=["a"]))
    assert error.violations[0].field == "experiment.excluded_columns"


def test_sanitized_names_stay_unique():
    names = searchable.sanitized_names(["a:b", "a,b", "a b", '"q"', ""])
    assert list(names) == ["a_b", "a_b_2", "a_b_3", "q", "column"]


def test_summary_is_in_natural_units_with_population_spread():
    rows = [
        {"fold_nb": 0, "test_r2": 0.5, "train_r2": 0.9, "test_neg_root_mean_squared_error": -2.0, "fit_time": 1.0},
        {"fold_nb": 1, "test_r2": 0.7, "train_r2": 0.8, "test_neg_root_mean_squared_error": -4.0, "fit_time": 2.0},
    ]
    used = scoring.scorers(c.TASK_REGRESSION, c.METRIC_RMSE)
    summary = scoring.summarize(rows, used)
    by_metric = {m["metric"]: m for m in summary.metrics}
    assert summary.primary_score == pytest.approx(3.0)
    assert by_metric[c.METRIC_RMSE]["std"] == pytest.approx(1.0)
    assert by_metric[c.METRIC_R2]["mean"] == pytest.approx(0.6)
    assert by_metric[c.METRIC_R2]["train_mean"] == pytest.approx(0.85)
    assert c.METRIC_MAE not in by_metric  # not in the table: not reported
    assert summary.fit_time == 3.0 and summary.folds_run == 2


def test_a_metric_undefined_on_a_fold_is_not_summarized():
    rows = [{"test_accuracy": 0.9, "test_avg_roc_auc": math.nan}, {"test_accuracy": 0.8, "test_avg_roc_auc": 0.7}]
    summary = scoring.summarize(rows, scoring.scorers(c.TASK_CLASSIFICATION, c.METRIC_ROC_AUC))
    assert summary.primary_score is None
    assert [m["metric"] for m in summary.metrics] == [c.METRIC_ACCURACY]


def test_metric_must_suit_the_task():
    with pytest.raises(ValueError, match="does not suit"):
        scoring.scorers(c.TASK_REGRESSION, c.METRIC_ACCURACY)


def limits(**conditions: object) -> Limits:
    return Limits.of(c.StopConditions(**conditions), default_time_limit=300)


def test_stop_conditions_in_order_and_direction():
    progress = Progress(done=5, best_score=0.31, best_result="modelResults/x", since_improvement=3)
    assert limit_reached(limits(max_models=10), c.METRIC_RMSE, progress, 1) is None
    reason, message = limit_reached(limits(target_score=0.35), c.METRIC_RMSE, progress, 1)
    assert reason == c.STOP_REASON_TARGET_SCORE and "modelResults/x" in message  # a loss: lower is better
    assert limit_reached(limits(target_score=0.35), c.METRIC_R2, progress, 1) is None
    assert limit_reached(limits(max_models=5), c.METRIC_R2, progress, 1)[0] == c.STOP_REASON_MAX_MODELS
    assert limit_reached(limits(no_improvement_models=3), c.METRIC_R2, progress, 1)[0] == c.STOP_REASON_NO_IMPROVEMENT
    assert limit_reached(limits(max_duration=seconds(60)), c.METRIC_R2, progress, 60)[0] == c.STOP_REASON_TIME_BUDGET


def test_limits_that_cannot_work_are_named():
    assert limits(max_models=3).problems() == []
    assert limits(max_models=3).per_model_time_limit == 300
    assert [f for f, _ in limits().problems()] == ["stop_conditions"]
    assert [f for f, _ in limits(max_models=-1).problems()] == ["stop_conditions.max_models"]
    fields = [f for f, _ in limits(max_models=2, per_model_time_limit=seconds(-1)).problems()]
    assert fields == ["stop_conditions.per_model_time_limit"]


def test_describe_a_pipeline_and_a_single_model():
    pipeline = (
        "GraphPipeline",
        {
            "models": {
                "enc": ("NumericalEncoder", {}),
                "sel": ("ColumnsSelector", {}),
                "imp": ("NumImputer", {}),
                "rf": ("RandomForestClassifier", {}),
            },
            "edges": [("sel", "imp"), ("enc", "imp", "rf")],
        },
    )
    assert describe(pipeline) == (
        "RandomForestClassifier",
        ["ColumnsSelector", "NumericalEncoder", "NumImputer", "RandomForestClassifier"],
    )
    assert describe(("Ridge", {"alpha": 1.0})) == ("Ridge", ["Ridge"])
    wrapped = ("BoxCoxTargetTransformer", ("Ridge", {"alpha": 1.0}), {"ll": 0})
    assert describe(wrapped) == ("Ridge", ["BoxCoxTargetTransformer", "Ridge"])
    assert describe(("GraphPipeline", {"models": {"m": wrapped}, "edges": [("m",)]}))[0] == "Ridge"
    assert describe(42) == ("42", [])


def dataset_of(frame: pd.DataFrame) -> dataset_pb2.Dataset:
    return dataset_pb2.Dataset(
        name="datasets/d",
        row_count=len(frame),
        columns=[dataset_pb2.ColumnProfile(name=n, index=i) for i, n in enumerate(frame.columns)],
    )


def test_a_large_table_is_split_and_sampled_in_streams(tmp_path):
    from services.runner import largedata

    frame = mixed_table(3000)
    frame.loc[[7, 8], "label"] = np.nan
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    exp = experiment(seed=9)
    whole = problem.load(path, dataset_of(frame), exp)
    sampled = problem.load(path, dataset_of(frame), exp, sample_cells=2000)
    assert sampled.sampled and not whole.sampled
    assert abs(sampled.holdout_count - 600) < 70 and sampled.training_rows + sampled.holdout_count == 2998
    assert abs(len(sampled.y) - 500) < 70  # 2,000 cells / 4 features
    assert abs((sampled.y == "yes").mean() - 0.5) < 0.07  # each class keeps its share
    rows = np.array(sampled.search_rows)
    assert (largedata.uniforms(9, largedata.HOLDOUT, rows) >= 0.2).all()  # never a holdout row
    assert not set(sampled.search_rows) & {7, 8}
    assert list(sampled.X.columns) == list(whole.X.columns)
    assert [k.kind for k in sampled.X.dtypes] == [k.kind for k in whole.X.dtypes] == ["f", "O", "O", "f"]
    assert sampled.X.iloc[0]["note"] == frame.loc[sampled.search_rows[0], "note"]
    again = problem.load(path, dataset_of(frame), exp, sample_cells=2000)
    assert again.search_rows == sampled.search_rows and again.holdout_digest == sampled.holdout_digest
    assert "holdout_rows" not in sampled.split_record(dataset_of(frame), exp)
    train = problem.load(path, dataset_of(frame), exp, sample_cells=2000, part="train")
    assert len(train.y) == sampled.training_rows and train.holdout_digest == sampled.holdout_digest
    holdout = problem.load(path, dataset_of(frame), exp, sample_cells=2000, part="holdout")
    assert len(holdout.holdout_y) == sampled.holdout_count and len(holdout.y) == 0


def test_large_regression_targets_are_numbers_and_text_is_refused(tmp_path):
    frame = mixed_table(2000).assign(value=lambda f: np.arange(len(f)) * 0.5)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    exp = experiment(target="value", task=c.TASK_REGRESSION)
    made = problem.load(path, dataset_of(frame), exp, sample_cells=1000)
    assert made.sampled and made.y.dtype.kind == "f" and abs(made.holdout_count - 400) < 60
    with pytest.raises(InvalidArgument, match="holds text such as"):
        problem.load(path, dataset_of(frame), experiment(target="note", task=c.TASK_REGRESSION), sample_cells=1000)


def test_pick_is_seeded_stratified_and_keeps_every_class():
    codes = np.array([0] * 90 + [1] * 9 + [2] * 1)
    chosen = problem.pick(codes, 100, 0.2, seed=1)
    assert chosen.sum() == 18 + 2 + 1 and chosen[99]  # at least one of each class
    # Keeping 5 rows of each class for the search: class 1 gives 2, class 2 none.
    assert problem.pick(codes, 100, 0.2, seed=1, min_search=5).sum() == 18 + 2 + 0
    assert (chosen == problem.pick(codes, 100, 0.2, seed=1)).all()
    assert not (chosen == problem.pick(codes, 100, 0.2, seed=2)).all()
    assert problem.pick(None, 10, 0.3, seed=0).sum() == 3


def test_a_file_without_header_read_in_chunks_names_its_columns(tmp_path):
    """PredictStream reads its CSV in blocks: a file without a header row gets
    column_<i> names block by block, as a whole file does (found by fuzzing: it
    answered INTERNAL)."""
    path = tmp_path / "rows.csv"
    path.write_text("1,2,3\n4,5,6\n7,8,9\n")
    options = c.CsvOptions(has_header=False)
    with problem.read_csv(path, options, dtype=str, chunksize=2) as reader:
        chunks = list(reader)
    assert [list(chunk.columns) for chunk in chunks] == [["column_0", "column_1", "column_2"]] * 2
    assert [len(chunk) for chunk in chunks] == [2, 1]
    assert list(problem.read_csv(path, options, dtype=str).columns) == ["column_0", "column_1", "column_2"]


def test_a_value_of_the_wrong_type_is_quoted_cut_in_the_refusal():
    """Errors travel in gRPC trailers, of which a client takes 16 KiB: a 70 KB
    cell quoted whole made the client see RESOURCE_EXHAUSTED (found by fuzzing)."""
    from services.runner import predicting

    loaded = predicting.Loaded(
        model=None, features={"a": "a"}, numeric={"a": True}, classification=True, classes=[], csv_options={}
    )
    with pytest.raises(InvalidArgument) as caught:
        predicting.features(pd.DataFrame({"a": ["1", "x" * 70_000]}), loaded, "csv")
    assert "column 'a' takes numbers; row 1 has 'xxx" in str(caught.value)
    assert "(70,000 characters)" in str(caught.value) and len(str(caught.value)) < 300
