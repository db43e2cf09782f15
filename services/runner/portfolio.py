"""The first candidates of every run: a short, fixed list of configurations
known to be strong on tabular data, before aikit's random exploration.

A portfolio entry is an aikit model description like any other candidate
(the default preprocessing of aikit's default phase, and the entry's model
and hyper-parameters), so it is stored, exported, trained and used to
predict the same way, and aikit's guider learns from its results.

Where the entries come from:
- AutoGluon-Tabular's default hyper-parameter presets (`autogluon.tabular.
  configs.hyperparameter_configs`): LightGBM at learning rate 0.05, its
  "GBMLarge" variant (128 leaves, learning rate 0.03, few rows per leaf) and
  its extra-trees variant, random forest and extra trees with 300 trees; its
  ordering puts the boosted trees first.
- FLAML's zero-shot defaults (`flaml.default`, Kayali & Wang 2022): on small
  tables the configurations it picks are small trees with few rows per leaf
  and more boosting rounds; hence the small-leaf LightGBM entry.
- auto-sklearn 2.0's portfolio (Feurer et al. 2020): a fixed list evaluated
  first beats starting the search from random or default draws; a
  regularised linear model is part of it as a cheap, different baseline.

The order is by expected score per second: cheap, strong entries first.
On large tables the expensive entries (many trees of full depth) go last.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

LARGE_TABLE_ROWS = 20_000
# Preprocessing of every entry, by aikit step: the choice aikit's default
# phase makes first (one-hot style encoding of categories, imputation of
# numbers, word counts of text).
PREPROCESSING = {
    "CategoryEncoder": "NumericalEncoder",
    "MissingValueImputer": "NumImputer",
    "TextEncoder": "CountVectorizerWrapper",
}


@dataclass(frozen=True)
class Spec:
    """One configuration: a model family (without the task's suffix) and its parameters."""

    name: str
    family: str
    """"LGBM", "RandomForest", "ExtraTrees" or "Linear"."""
    params: dict[str, Any]
    expensive: bool = False
    """Many full-depth trees: moved to the end on large tables."""


SPECS = (
    # LightGBM a little slower and steadier than its defaults (AutoGluon's GBM).
    Spec(
        "gbm",
        "LGBM",
        {
            "n_estimators": 300,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_child_samples": 10,
            "colsample_bytree": 0.8,
            "subsample": 0.8,
            "subsample_freq": 1,
        },
    ),
    Spec("rf", "RandomForest", {"n_estimators": 300}, expensive=True),
    Spec("xt", "ExtraTrees", {"n_estimators": 300}, expensive=True),
    # Small trees, few rows per leaf (FLAML's zero-shot picks on small tables).
    Spec(
        "gbm_small",
        "LGBM",
        {
            "n_estimators": 400,
            "learning_rate": 0.05,
            "num_leaves": 8,
            "min_child_samples": 3,
            "colsample_bytree": 0.7,
            "reg_lambda": 1.0,
        },
    ),
    # AutoGluon's GBMXT: LightGBM with extremely randomized splits.
    Spec(
        "gbm_xt",
        "LGBM",
        {"n_estimators": 300, "learning_rate": 0.05, "extra_trees": True, "colsample_bytree": 0.8},
    ),
    Spec("linear", "Linear", {}),
    # AutoGluon's GBMLarge.
    Spec(
        "gbm_large",
        "LGBM",
        {
            "n_estimators": 300,
            "learning_rate": 0.03,
            "num_leaves": 128,
            "min_child_samples": 3,
            "colsample_bytree": 0.9,
        },
        expensive=True,
    ),
)

# aikit model names by family and task (classification, regression), with
# the parameters that depend on the task.
MODELS = {
    "LGBM": (("LGBMClassifier", {}), ("LGBMRegressor", {})),
    "RandomForest": (("RandomForestClassifier", {}), ("RandomForestRegressor", {})),
    "ExtraTrees": (("ExtraTreesClassifier", {}), ("ExtraTreesRegressor", {})),
    "Linear": (("LogisticRegression", {"C": 1.0, "max_iter": 1000}), ("Ridge", {"alpha": 1.0})),
}


@dataclass(frozen=True)
class Entry:
    name: str
    models_by_steps: OrderedDict[str, tuple[Any, Any]]
    """aikit step -> (step, model name), or (None, None) for a step left out."""
    hyper_by_step: dict[tuple[str, tuple[str, str]], dict[str, Any]]
    """(step, (step, model name)) -> parameters, as aikit's default phase keys them."""


def entries(config: Any, rows: int, features: int, seed: int) -> Iterator[Entry]:
    """The portfolio for a table: the entries whose model the run allows, in
    order. `config` is aikit's AutoMlConfig of the table (its needed steps
    and the models it keeps)."""
    from aikit.enums import TypeOfProblem
    from aikit.ml_machine.ml_machine_registration import MODEL_REGISTER

    regression = config.type_of_problem == TypeOfProblem.REGRESSION
    kept = {(step, name) for step, name in config.models_to_keep}
    specs = list(SPECS)
    if rows > LARGE_TABLE_ROWS:
        specs = [s for s in specs if not s.expensive] + [s for s in specs if s.expensive]
    for spec in specs:
        model, task_params = MODELS[spec.family][1 if regression else 0]
        if ("Model", model) not in kept:
            continue
        steps: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        hyper: dict[tuple[str, tuple[str, str]], dict[str, Any]] = {}
        usable = True
        for step in config.needed_steps:
            name = step["step"]
            choice: str | None
            if name == "Model":
                choice = model
            elif step["optional"]:
                steps[name] = (None, None)
                continue
            else:
                choice = PREPROCESSING.get(name) or next((m for s, m in config.models_to_keep if s == name), None)
                if choice is None or (name, choice) not in kept:
                    choice = next((m for s, m in config.models_to_keep if s == name), None)
            if choice is None:
                usable = False
                break
            steps[name] = (name, choice)
            params = dict(MODEL_REGISTER.default_hyper_parameters.get((name, choice), {}))
            if name == "Model":
                params = {k: v for k, v in params.items() if k in ("random_state",)}
                params.update(task_params, **spec.params)
                if "random_state" in _accepted(model):
                    params["random_state"] = seed % 2**31
            hyper[(name, (name, choice))] = params
        if usable:
            yield Entry(spec.name, steps, hyper)


def _accepted(model: str) -> set[str]:
    """The constructor parameters of an aikit model name."""
    from aikit.model_registration import DICO_NAME_KLASS

    klass = DICO_NAME_KLASS[model]
    return set(klass().get_params(deep=False))
