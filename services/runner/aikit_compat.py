"""Makes aikit 0.2.2 (2020) import and run on the pinned stack: scikit-learn
1.5.2, pandas 2.2.3, numpy 1.26.4, scipy 1.14.1, statsmodels 0.14.4, lightgbm
4.7.0. The breakages are listed in ../shared/notes/aikit.md; each patch below
names the aikit file it serves and the upstream change that broke it.

Nothing in the project imports aikit except through `load()`, which applies
the import-time shims, imports the aikit modules the runner uses, applies the
run-time patches, and checks that each one took. A patch whose target has
moved raises `CompatError` at start-up, naming the patch, rather than letting
a search fail candidate by candidate.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

TESTED = {
    "scikit-learn": "1.5.2",
    "pandas": "2.2.3",
    "numpy": "1.26.4",
    "scipy": "1.14.1",
    "statsmodels": "0.14.4",
    "lightgbm": "4.7.0",
    "aikit": "0.2.2",
}

# The aikit modules the runner uses, imported (in this order) by load().
MODULES = (
    "aikit",
    "aikit.tools.helper_functions",
    "aikit.tools.json_helper",
    "aikit.tools.db_informations",
    "aikit.scorer",
    "aikit.cross_validation",
    "aikit.pipeline",
    "aikit.model_registration",
    "aikit.transformers",
    "aikit.transformers.target",
    "aikit.models",
    "aikit.models.stacking",
    "aikit.ml_machine",
    "aikit.ml_machine.hyper_parameters",
    "aikit.ml_machine.model_registrer",
    "aikit.ml_machine.ml_machine_registration",
    "aikit.ml_machine.ml_machine",
    "aikit.ml_machine.ml_machine_guider",
    "aikit.ml_machine.jobs",
)


log = logging.getLogger("automl.runner.aikit")


class CompatError(RuntimeError):
    """A patch no longer applies: the stack is not the one this module was written for."""


_loaded: types.ModuleType | None = None


def load() -> types.ModuleType:
    """Patch, import and check aikit once per process; returns the `aikit` package."""
    global _loaded
    if _loaded is None:
        if any(name == "aikit" or name.startswith("aikit.") for name in sys.modules):
            raise CompatError("aikit was imported before services.runner.aikit_compat.load(): import it only here")
        _check_versions()
        for shim in IMPORT_SHIMS:
            _apply(shim)
        printed = io.StringIO()  # aikit prints notices about optional packages (nltk, gensim) at import
        # ...and logs them as warnings: gensim and nltk are left out on purpose (aikit.md).
        logging.getLogger("aikit").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(printed):
            for name in MODULES:
                importlib.import_module(name)
        for line in printed.getvalue().splitlines():
            log.debug("aikit: %s", line)
        # aikit logs every draw and job at INFO ("I'll create a random model..."):
        # the runner logs each candidate itself.
        logging.getLogger("aikit").setLevel(logging.WARNING)
        for patch in RUNTIME_PATCHES:
            _apply(patch)
        _loaded = sys.modules["aikit"]
    return _loaded


def _apply(patch: Callable[[], None]) -> None:
    try:
        patch()
    except CompatError:
        raise
    except Exception as exc:
        raise CompatError(f"aikit compatibility patch {patch.__name__} no longer applies: {exc!r}") from exc


def _check_versions() -> None:
    from importlib.metadata import version

    found = {name: version(name) for name in TESTED}
    wrong = {name: v for name, v in found.items() if v != TESTED[name]}
    if wrong:
        listed = ", ".join(f"{n} {v} (tested: {TESTED[n]})" for n, v in wrong.items())
        raise CompatError(f"the aikit compatibility layer was written for other versions: {listed}")


def _module(name: str, **attributes: Any) -> None:
    """Register a stand-in for a module that upstream removed."""
    module = types.ModuleType(name, f"stand-in for the removed {name}, made by services.runner.aikit_compat")
    module.__dict__.update(attributes)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)


# ------------------------------------------------------------ import time


def numpy_aliases() -> None:
    """np.bool and np.object (removed in numpy 1.24, numpy#22607) in
    transformers/base.py, transformers/categories.py, tools/db_informations.py:
    they were the builtins."""
    np.bool = bool  # type: ignore[attr-defined]
    np.object = object  # type: ignore[attr-defined]


def sklearn_safe_indexing() -> None:
    """sklearn.utils.safe_indexing (removed in scikit-learn 0.24, made private
    as _safe_indexing) in tools/helper_functions.py."""
    import sklearn.utils

    sklearn.utils.safe_indexing = sklearn.utils._safe_indexing


def sklearn_check_fit_params() -> None:
    """sklearn.utils.validation._check_fit_params (renamed _check_method_params
    in scikit-learn 1.4) in cross_validation.py; aikit's own fallback imports
    _index_param_value, which is gone too."""
    import sklearn.utils.validation

    sklearn.utils.validation._check_fit_params = sklearn.utils.validation._check_method_params


def sklearn_if_delegate_has_method() -> None:
    """sklearn.utils.metaestimators.if_delegate_has_method (removed in
    scikit-learn 1.3; available_if replaces it) in pipeline.py,
    models/stacking.py, transformers/base.py, transformers/model_wrapper.py."""
    import sklearn.utils.metaestimators as meta

    def if_delegate_has_method(delegate: str | tuple[str, ...] | list[str]) -> Callable[[Any], Any]:
        names = tuple(delegate) if isinstance(delegate, (list, tuple)) else (delegate,)

        def decorate(method: Any) -> Any:
            def delegate_has_it(self: Any) -> bool:
                for name in names:
                    inner = getattr(self, name, None)
                    if inner is not None:
                        getattr(inner, method.__name__)  # AttributeError: the method is not available
                        return True
                raise AttributeError(f"none of {names} is set")

            return meta.available_if(delegate_has_it)(method)

        return decorate

    meta.if_delegate_has_method = if_delegate_has_method


def sklearn_metrics_modules() -> None:
    """sklearn.metrics.scorer and sklearn.metrics.regression (made private in
    scikit-learn 0.24) in scorer.py and transformers/base.py. SCORERS is the
    live registry (_SCORERS), so that the scorers aikit adds to it are found by
    name; _PredictScorer became _Scorer in scikit-learn 1.4."""
    import sklearn.metrics
    from sklearn.metrics import _regression, _scorer
    from sklearn.utils.multiclass import type_of_target

    public = {k: v for k, v in vars(sklearn.metrics).items() if not k.startswith("_")}
    _module(
        "sklearn.metrics.scorer",
        **public,
        SCORERS=_scorer._SCORERS,
        _BaseScorer=_scorer._BaseScorer,
        _PredictScorer=_scorer._Scorer,
        type_of_target=type_of_target,
    )
    _module("sklearn.metrics.regression", **public, _check_reg_targets=_regression._check_reg_targets)


def sklearn_tree_modules() -> None:
    """sklearn.ensemble.forest and sklearn.tree.tree (made private in
    scikit-learn 0.24) in models/rotation_forest.py."""
    from sklearn.ensemble import _forest
    from sklearn.tree import _classes, _tree

    _module(
        "sklearn.ensemble.forest", ForestClassifier=_forest.ForestClassifier, ForestRegressor=_forest.ForestRegressor
    )
    _module("sklearn.tree.tree", DTYPE=_tree.DTYPE, **{k: getattr(_classes, k) for k in _classes.__all__})


def lightgbm_wrapper() -> None:
    """models/sklearn_lightgbm_wrapper.py is a copy of lightgbm 2.x's
    scikit-learn wrapper that imports lightgbm internals removed in lightgbm 3;
    aikit's unreleased master uses lightgbm.sklearn instead, as here."""
    import lightgbm.sklearn

    sys.modules["aikit.models.sklearn_lightgbm_wrapper"] = types.SimpleNamespace(  # type: ignore[assignment]
        LGBMClassifier=lightgbm.sklearn.LGBMClassifier,
        LGBMRegressor=lightgbm.sklearn.LGBMRegressor,
        LGBMRanker=lightgbm.sklearn.LGBMRanker,
    )


IMPORT_SHIMS: tuple[Callable[[], None], ...] = (
    numpy_aliases,
    sklearn_safe_indexing,
    sklearn_check_fit_params,
    sklearn_if_delegate_has_method,
    sklearn_metrics_modules,
    sklearn_tree_modules,
    lightgbm_wrapper,
)


# --------------------------------------------------------------- run time


def features_selector_random_state() -> None:
    """transformers/base.py: FeaturesSelectorClassifier takes random_state but
    never stores it, so clone() (every cross-validation fold: scikit-learn
    checks that get_params round-trips since 0.24) fails."""
    from aikit.transformers import base

    cls = base.FeaturesSelectorClassifier
    original = cls.__init__

    @functools.wraps(original)  # keeps the signature that get_params reads
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.random_state = kwargs.get("random_state")

    cls.__init__ = __init__
    from sklearn.base import clone

    if clone(cls(random_state=7)).random_state != 7:
        raise CompatError("FeaturesSelectorClassifier still loses random_state")


def create_cv_without_shuffle() -> None:
    """cross_validation.create_cv passes random_state to (Stratified)KFold even
    without shuffle, which scikit-learn 0.24 made an error; it used to be
    ignored. Every target encoder (transformers/target.py) hit it."""
    from aikit import cross_validation
    from aikit.models import stacking
    from aikit.transformers import target

    original = cross_validation.create_cv

    @functools.wraps(original)
    def create_cv(
        cv: Any = 3, y: Any = None, classifier: bool = False, shuffle: bool = False, random_state: Any = None
    ) -> Any:
        return original(cv, y, classifier=classifier, shuffle=shuffle, random_state=random_state if shuffle else None)

    for module in (cross_validation, target, stacking):
        if module.create_cv is not original:
            raise CompatError(f"{module.__name__}.create_cv is not aikit's create_cv")
        module.create_cv = create_cv


def search_space_values() -> None:
    """ml_machine/ml_machine_registration.py draws values today's
    scikit-learn refuses: criterion "mse"/"mae" (renamed "squared_error" /
    "absolute_error" in 1.0, removed in 1.2), max_features="auto" (removed in
    1.3; it meant "sqrt" for classifiers), LogisticRegression penalty "l1" with
    the default lbfgs solver (the default changed from liblinear in 0.22)."""
    from aikit.ml_machine import hyper_parameters as hp
    from aikit.ml_machine import ml_machine_registration as reg
    from aikit.ml_machine.model_registrer import MODEL_REGISTER, _AbstractModelRepresentation

    base = reg.ModelRepresentationBase
    base.default_hyper["max_features"] = hp.HyperComposition(
        [(0.25, ["sqrt"]), (0.75, hp.HyperRangeBetaFloat(start=0, end=1, alpha=3, beta=1))]
    )
    for cls in (reg.RandomForestRegressor_Model, reg.ExtraTreesRegressor_Model):
        if cls.custom_hyper.get("criterion") != ("mse", "mae"):
            raise CompatError(f"{cls.__name__}.custom_hyper changed: {cls.custom_hyper}")
        cls.custom_hyper = {"criterion": ("squared_error", "absolute_error")}
    reg.LogisticRegression_Model.custom_hyper = {"solver": ["liblinear"]}  # supports both l1 and l2
    # The register computed every space when aikit was imported: recompute them.
    for cls in vars(reg).values():
        if isinstance(cls, type) and issubclass(cls, _AbstractModelRepresentation) and cls.klass is not None:
            key = (cls.category, cls.klass.__name__)
            if key in MODEL_REGISTER.hyper_parameters:
                MODEL_REGISTER.hyper_parameters[key] = cls.get_hyper_parameter()


def guider_missing_columns() -> None:
    """ml_machine/ml_machine_guider.py: predict_metric selects the training
    columns with .loc, which raises KeyError for a column the new drafts lack
    since pandas 1.0; it killed the search once 10 models were done. reindex
    gives the missing columns as NaN, which the guider's transformer handles."""
    from aikit.ml_machine import ml_machine_guider

    guider = ml_machine_guider.AutoMlModelGuider

    def predict_metric(self: Any, new_params: Any) -> tuple[Any, Any]:
        if self._nb_models_done is None or self._nb_models_done <= 10:
            return None, None
        frame = self.result_reader.params_to_df(new_params).reindex(columns=self.params_training_columns)
        features = self.transformer_model.transform(frame)
        return self.random_forest.predict(features), self.random_forest_variance.predict(features)

    if "loc[:, self.params_training_columns]" not in _source(guider.predict_metric):
        raise CompatError("AutoMlModelGuider.predict_metric changed")
    guider.predict_metric = predict_metric


def _source(function: Any) -> str:
    import inspect

    return inspect.getsource(function)


RUNTIME_PATCHES: tuple[Callable[[], None], ...] = (
    features_selector_random_state,
    create_cv_without_shuffle,
    search_space_values,
    guider_missing_columns,
)
