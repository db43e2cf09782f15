"""The candidate stream in-process: the portfolio first, a failing guider
falls back to exploration, pipelines listed in the order data flows."""

from __future__ import annotations

from pathlib import Path

import pytest
import sklearn.datasets

from automl.v1 import common_pb2 as c
from services.runner import portfolio
from services.runner.candidates import Candidates, Closed, describe


@pytest.fixture
def iris(tmp_path: Path) -> Candidates:
    X, y = sklearn.datasets.load_iris(return_X_y=True, as_frame=True)
    return Candidates(X, y, c.TASK_CLASSIFICATION, [], ["accuracy"], 5, 0, tmp_path / "aikit")


def test_the_portfolio_comes_first_then_aikit(iris: Candidates):
    drawn = [iris.next() for _ in range(len(portfolio.SPECS) + 2)]
    assert [d.job_type for d in drawn[: len(portfolio.SPECS)]] == ["portfolio"] * len(portfolio.SPECS)
    assert drawn[0].model_family == "LGBMClassifier" and drawn[1].model_family == "RandomForestClassifier"
    assert "'n_estimators': 300" in str(drawn[1].job_param["model_json"])
    assert {d.job_type for d in drawn[len(portfolio.SPECS) :]} <= {"exploration", "block_search", "guided"}
    assert len({d.job_id for d in drawn}) == len(drawn)


def test_allowed_families_filter_the_portfolio(tmp_path: Path):
    X, y = sklearn.datasets.load_iris(return_X_y=True, as_frame=True)
    only = Candidates(X, y, c.TASK_CLASSIFICATION, ["ExtraTreesClassifier"], ["accuracy"], 5, 0, tmp_path)
    first = only.next()
    assert (first.job_type, first.model_family) == ("portfolio", "ExtraTreesClassifier")
    assert only.next().job_type != "portfolio"


def test_a_guider_that_raises_falls_back_to_exploration_once_noted(iris: Candidates):
    calls = []

    def broken() -> str:
        calls.append(1)
        raise ValueError("Input y contains NaN.")

    iris._portfolio.clear()
    iris.queue.remove = broken  # type: ignore[method-assign]
    drawn = [iris.next() for _ in range(3)]
    assert [d.job_type for d in drawn] == ["exploration"] * 3
    assert len(calls) == 1, "the guider is not asked again once it failed"
    assert len(iris.notes) == 1 and "ValueError: Input y contains NaN." in iris.notes[0]


def test_pipelines_are_listed_in_the_order_data_flows():
    model = (
        "GraphPipeline",
        {
            "models": {
                "NumericalEncoder": ("NumericalEncoder", {}),
                "LGBMClassifier": ("LGBMClassifier", {}),
                "ColumnsSelector": ("ColumnsSelector", {}),
                "NumImputer": ("NumImputer", {}),
            },
            "edges": [("ColumnsSelector", "NumImputer"), ("NumericalEncoder", "NumImputer", "LGBMClassifier")],
        },
    )
    family, steps = describe(model)
    assert family == "LGBMClassifier"
    assert steps.index("NumericalEncoder") < steps.index("NumImputer") < steps.index("LGBMClassifier")
    assert steps.index("ColumnsSelector") < steps.index("NumImputer") and steps[-1] == "LGBMClassifier"


def test_work_follows_the_final_estimators_trees():
    from services.runner.candidates import work

    forest = ("RandomForestClassifier", {"n_estimators": 300})
    assert work(forest) == 3.0
    assert work(("GraphPipeline", {"models": {"a": ("NumImputer", {}), "b": forest}, "edges": [("a", "b")]})) == 3.0
    assert work(("BoxCoxTargetTransformer", ("LGBMRegressor", {"n_estimators": 1000}), {})) == 10.0
    assert work(("LogisticRegression", {})) == 1.0
    # dart boosting's time grows with the square of its trees
    assert work(("LGBMClassifier", {"boosting_type": "dart", "n_estimators": 600})) == 18.0
    assert work(("LGBMClassifier", {"boosting_type": "gbdt", "n_estimators": 600})) == 6.0


def test_a_draw_that_fails_after_the_run_is_over_ends_quietly(iris: Candidates, caplog):
    def folder_gone() -> str:
        iris.close()  # the run ended while the guider was fitting, and its folder went
        raise OSError("failed to create .../aikit: No such file or directory")

    iris._portfolio.clear()
    iris.queue.remove = folder_gone  # type: ignore[method-assign]
    with pytest.raises(Closed):
        iris.next()
    assert iris.notes == [] and "guided search failed" not in caplog.text
    with pytest.raises(Closed):
        iris.next()  # and no draw starts once closed
