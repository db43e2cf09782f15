"""A classification Predict runs the pipeline once when its final step's
predict is the argmax of its own probabilities (predicting.one_pass_classes):
the labels it answers must be exactly the pipeline's predict, ties included,
for every kind of final step let through; the others keep two passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn.datasets
from lightgbm import LGBMClassifier
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from services.runner import ensemble, predicting
from services.runner.worker import build


def table(binary: bool) -> tuple[pd.DataFrame, pd.Series]:
    loader = sklearn.datasets.load_breast_cancer if binary else sklearn.datasets.load_iris
    X, y = loader(return_X_y=True, as_frame=True)
    labels = np.asarray(["no", "yes"] if binary else ["setosa", "versicolor", "virginica"])
    return X, pd.Series(labels[y.to_numpy()])


def loaded(model, y: pd.Series) -> predicting.Loaded:
    return predicting.Loaded(
        model=model, features={}, numeric={}, classification=True, classes=sorted(set(y)), csv_options={}
    )


# Few trees and no depth limit: probabilities in quarters, so rows whose two best
# classes tie, where "the first argmax" must be what the model's predict says too.
ONE_PASS = {
    "forest": lambda: RandomForestClassifier(n_estimators=4, random_state=0),
    "extra trees": lambda: ExtraTreesClassifier(n_estimators=4, random_state=0),
    "lightgbm": lambda: LGBMClassifier(n_estimators=5, verbose=-1),
    "sklearn pipeline": lambda: make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=4, random_state=1)),
    "aikit graph": lambda: build(
        (
            "GraphPipeline",
            {
                "models": {
                    "impute": ("NumImputer", {}),
                    "forest": ("RandomForestClassifier", {"n_estimators": 4, "random_state": 2}),
                },
                "edges": [("impute", "forest")],
            },
        )
    ),
    "ensemble": lambda: ensemble.GreedyEnsembleClassifier(
        models=[("RandomForestClassifier", {"n_estimators": 3, "random_state": 3}), ("LogisticRegression", {})],
        weights=[1.0, 1.0],
    ),
}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "multiclass"])
@pytest.mark.parametrize("kind", sorted(ONE_PASS))
def test_one_pass_answers_what_predict_answers(kind, binary):
    X, y = table(binary)
    model = ONE_PASS[kind]().fit(X, y)
    noisy = X + np.random.default_rng(0).normal(0, X.std().to_numpy() * 0.5, X.shape)  # rows far from training
    served = loaded(model, y)
    assert served.argmax_classes is not None, kind
    labels, probabilities = predicting.raw_predictions(served, noisy)
    assert labels.tolist() == model.predict(noisy).tolist()
    np.testing.assert_array_equal(probabilities, model.predict_proba(noisy))


@pytest.mark.parametrize(
    "model",
    [HistGradientBoostingClassifier(max_iter=5), LogisticRegression(max_iter=200)],
    ids=["hist gradient boosting", "logistic regression"],
)
def test_other_classifiers_keep_two_passes(model):
    X, y = table(True)
    served = loaded(model.fit(X, y), y)
    assert served.argmax_classes is None
    labels, _ = predicting.raw_predictions(served, X)
    assert labels.tolist() == model.predict(X).tolist()
