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
import copy
import functools
import importlib
import io
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

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
    np.bool = bool  # type: ignore[attr-defined]  # removed from numpy 1.24: put back for aikit
    np.object = object  # type: ignore[attr-defined]  # removed from numpy 1.24: put back for aikit


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

    wrapper = types.SimpleNamespace(
        LGBMClassifier=lightgbm.sklearn.LGBMClassifier,
        LGBMRegressor=lightgbm.sklearn.LGBMRegressor,
        LGBMRanker=lightgbm.sklearn.LGBMRanker,
    )
    sys.modules["aikit.models.sklearn_lightgbm_wrapper"] = wrapper  # type: ignore[assignment]  # a module's stand-in


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
    the default lbfgs solver (the default changed from liblinear in 0.22).

    And Text_TruncatedSVD_DimensionReduction assigns custom_hyper twice, the
    second time without its n_components (10 to 500): the text SVD drew a
    fraction of the vocabulary instead, ~34,000 components of a character
    n-gram vocabulary on titanic, and blew the worker's memory limit. Its
    intended range is restored."""
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
    text_svd = reg.Text_TruncatedSVD_DimensionReduction
    if "n_components" in text_svd.custom_hyper:
        raise CompatError(f"{text_svd.__name__}.custom_hyper changed: {text_svd.custom_hyper}")
    text_svd.custom_hyper = {**text_svd.custom_hyper, "n_components": hp.HyperRangeInt(10, 500, step=5)}
    # The register computed every space when aikit was imported: recompute them.
    # aikit's model representations: untyped classes whose attributes (klass, category) are Any.
    representations: list[Any] = [
        cls for cls in vars(reg).values() if isinstance(cls, type) and issubclass(cls, _AbstractModelRepresentation)
    ]
    for cls in representations:
        if cls.klass is not None:
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


GUIDER_PERFECT_BONUS = 1.0
"""How far above the best imperfect score the guider puts a perfect one (in -log10 units)."""


def guider_metric_target() -> None:
    """ml_machine/ml_machine_guider.py: fit_metric_model fits its forest on
    NaN ("Input y contains NaN") as soon as one candidate's mean score is
    perfect, which every easy table reaches within a dozen candidates. No
    upstream change broke it: aikit's own transformation (unchanged on its
    master) maps a score of exactly 1 (accuracy, avg_roc_auc, f1_macro, r2:
    -log10(1 - x)) or a loss of exactly 0 (-log10(-x)) to +inf, then
    standardizes each scorer's column, and inf - mean(inf) is NaN on every
    row. The same standardization gives 0/0 for a scorer on which every
    candidate scored the same, and the kernel transformation it uses for the
    scorers it does not know (the runner's balanced_accuracy and
    neg_root_mean_squared_error) gives NaN on such a column and +inf at a
    cdf of 1. This version keeps aikit's transformations and averaging but
    ranks a perfect score just above the best finite one, gives a constant
    column no weight, skips a scorer with no value at all, and clips the
    kernel cdf inside (0, 1).

    It also refits the forest when new results arrived: aikit's test compares
    the count of results with itself, so its forest saw only the first ten
    or so results of a run."""
    from aikit.ml_machine import ml_machine_guider as mg

    guider = mg.AutoMlModelGuider
    source = _source(guider.fit_metric_model)
    for expected in ("get_metric_default_transformation(scorer)", "np.std(y_params)", "fillna(y_params.min())"):
        if expected not in source:
            raise CompatError(f"AutoMlModelGuider.fit_metric_model changed: no {expected!r}")
    with np.errstate(divide="ignore"):
        perfect = mg.get_metric_default_transformation("accuracy")(np.array([1.0]))
    if not np.isinf(perfect).all():
        raise CompatError("aikit's default metric transformation no longer maps a perfect score to inf")

    def kde_cdf(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if np.ptp(values) == 0:
            return np.full(len(values), 0.5)
        cdf: npt.NDArray[np.float64] = np.clip(mg.kde_transfo_quantile(values), 1e-6, 1 - 1e-6)
        return cdf

    def transform(how: str | None, scorer: str, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if how is None:
            return values
        if how == "rank":
            return kde_cdf(values)
        if how == "default":
            try:
                function = mg.get_metric_default_transformation(scorer)
            except ValueError:
                function = None
            if function is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    out = np.asarray(function(values), dtype=float)
                finite = out[np.isfinite(out)]
                best = finite.max() + GUIDER_PERFECT_BONUS if len(finite) else 0.0
                return np.nan_to_num(out, nan=finite.min() if len(finite) else 0.0, posinf=best, neginf=-best)
        if how in ("normal", "default"):
            quantiles: npt.NDArray[np.float64] = mg.norm.ppf(kde_cdf(values))
            return quantiles
        raise ValueError(f"I don't know this metric_transformation {how}")

    def fit_metric_model(self: Any) -> Any:
        results = self.result_reader.load_all_results(aggregate=True)
        additional = self.result_reader.load_additional_results()
        if additional.shape[0] > 0:
            results = mg.pd.merge(results, additional, how="inner", on="job_id")
        fitted_on = self._nb_models_done if self.params_training_columns is not None else None
        self._nb_models_done = len(results)
        if self._nb_models_done <= self.min_nb_of_models or fitted_on == self._nb_models_done:
            return self
        params = self.result_reader.load_all_params()
        merged = mg.pd.merge(params, results, how="inner", on="job_id")
        training_cols = mg.diff(list(params.columns), ["job_id"])
        guiding = self.job_config.guiding_scorer
        if guiding is None:
            scorers = self.job_config.scoring if self.avg_metrics else [self.job_config.main_scorer]
        else:
            scorers = guiding if isinstance(guiding, list) else [guiding]
        columns = []
        for scorer in scorers:
            raw = merged[f"test_{scorer}"] if f"test_{scorer}" in merged.columns else merged[scorer]
            if raw.isna().all():
                continue  # a scorer that gave no value says nothing
            values = transform(self.metric_transformation, scorer, raw.fillna(raw.min()).to_numpy(dtype=float))
            if self.avg_metrics:
                spread = np.std(values)
                values = (values - np.mean(values)) / spread if spread > 0 else np.zeros(len(values))
            columns.append(values)
        target = np.mean(columns, axis=0) if columns else np.zeros(len(merged))
        transformer = mg.GraphPipeline(
            models={"encoder": mg.NumericalEncoder(), "imputer": mg.NumImputer()}, edges=[("encoder", "imputer")]
        )
        features = transformer.fit_transform(merged.loc[:, training_cols])
        forest = mg.RandomForestRegressor(n_estimators=100, min_samples_leaf=5)
        forest.fit(features, target)
        variance = mg.RandomForestVariance(forest)
        variance.fit(features, target)
        self.params_training_columns = training_cols
        self.transformer_model = transformer
        self.random_forest = forest
        self.random_forest_variance = variance
        return self

    guider.fit_metric_model = fit_metric_model


def target_transformer_over_blocks() -> None:
    """ml_machine/model_graph.py: _rec_convert_graph_to_code wraps a
    composition node with several successors around the list of its
    successors' branches. The generator puts a target transformer
    (BoxCoxTargetTransformer) above every first step, one per column block,
    so on a table with two blocks or more (numbers and categories, text) the
    description became BoxCoxTargetTransformer([branch, branch]) as the first
    step of a GraphPipeline, which GraphPipeline refuses ("Intermediary step
    (BoxCoxTargetTransformer) should have a 'fit', 'fit_transform' and
    'transform' method"): 76 of 149 candidates on auto-mpg. Not an upstream
    change (aikit's master has the same code); the list form suits only
    stacking. A target transformer now wraps the whole model below it, as
    a GraphPipeline."""
    import networkx as nx
    from aikit.enums import StepCategories
    from aikit.ml_machine import model_graph
    from aikit.tools import graph_helper

    original = model_graph._rec_convert_graph_to_code
    if "[models_dico[successor] for successor in successors]" not in _source(original):
        raise CompatError("model_graph._rec_convert_graph_to_code changed")

    def _rec_convert_graph_to_code(
        Graph: Any,
        all_models_params: Any,
        models_dico: Any,
        model_name_mapping: Any = None,
        composition_already_done: Any = None,
    ) -> Any:
        done = set() if composition_already_done is None else composition_already_done
        node = model_graph._find_first_composition_node(Graph, done) if len(Graph.nodes) > 1 else None
        if node is None or node[0] != StepCategories.TargetTransformer or len(list(Graph.successors(node))) < 2:
            return original(Graph, all_models_params, models_dico, model_name_mapping, done)
        done.add(node)
        below = nx.descendants(Graph, node)
        inner = _rec_convert_graph_to_code(
            Graph.subgraph(below), all_models_params, models_dico, model_name_mapping, done
        )
        models_dico[node] = (model_graph._klass_from_node(node), inner, all_models_params[node])
        merged = graph_helper.merge_nodes(Graph, nodes_mapping=dict.fromkeys(below, node))
        return _rec_convert_graph_to_code(merged, all_models_params, models_dico, model_name_mapping, done)

    model_graph._rec_convert_graph_to_code = _rec_convert_graph_to_code


def unique_reduction_column_names() -> None:
    """transformers/model_wrapper.py: TruncatedSVDWrapper names its columns
    SVD__0, SVD__1, ... (PCAWrapper PCA__*, KMeansTransformer KM___*)
    whatever its input, so a dimension reduction after a text SVD, with
    drop_used_columns=False, output two SVD__0 columns. LightGBM 4.7
    refuses duplicate feature names ("Feature (SVD__0) appears more than one
    time"); pandas selections of such a column return two. A wrapper whose
    prefix is fixed by its class now numbers its prefix (SVD2__0) when its
    input already has columns with that prefix."""
    from aikit.transformers import base, model_wrapper

    wrapper = model_wrapper.ModelWrapper
    original = wrapper._fit_transform
    if "column_prefix" not in _source(wrapper.try_to_find_feature_names_all_at_once):
        raise CompatError("ModelWrapper no longer names columns with column_prefix")
    for cls in (base.TruncatedSVDWrapper, base.PCAWrapper):
        if "column_prefix" in cls().get_params():
            raise CompatError(f"{cls.__name__}.column_prefix became a parameter")

    @functools.wraps(original)
    def _fit_transform(self: Any, X: Any, y: Any, is_fit: bool, is_transform: bool, fit_params: Any = None) -> Any:
        if is_fit and hasattr(X, "columns"):
            base_prefix = self.__dict__.setdefault("_class_column_prefix", self.column_prefix)
            if base_prefix is not None and "column_prefix" not in self.get_params(deep=False):
                taken = {str(c).split("__", 1)[0] for c in X.columns if "__" in str(c)}
                prefix, n = base_prefix, 1
                while prefix in taken:
                    n += 1
                    prefix = f"{base_prefix}{n}"
                self.column_prefix = prefix
        return original(self, X, y, is_fit, is_transform, fit_params)

    wrapper._fit_transform = _fit_transform


def reduction_components() -> None:
    """transformers/base.py: int_n_components turns a fraction of the
    columns into min(max(int(n * fraction), 1), n - 1) components, 0 for a
    single column (a table with one numeric column, or a block reduced to
    one column upstream). scikit-learn's parameter validation (1.2) refuses
    TruncatedSVD's n_components=0 ("Got 0 instead"), and FeaturesSelector kept no column
    at all (LightGBM: "maximum feature index in dataset is -1"; forests:
    "at least one array or dtype is required"). One column keeps one; and
    as scikit-learn's TruncatedSVD refuses fewer than two columns, the SVD
    of a single column is the column itself (what one component would be,
    up to its scale).

    At the other end, a fraction of the columns of a character n-gram
    vocabulary (0.85 of ~40,000 on titanic's Name and Ticket) asked
    TruncatedSVD for ~34,000 components of 713 rows: gigabytes of dense
    components, past the worker's memory limit. No SVD has more meaningful
    components than rows, so the count is capped there."""
    from aikit.transformers import base
    from sklearn.preprocessing import FunctionTransformer

    original = base.int_n_components
    if original(1, 0.5) != 0:
        raise CompatError("aikit's int_n_components no longer gives 0 components for one column")

    @functools.wraps(original)
    def int_n_components(nbcolumns: int, n_components: float) -> int:
        count: int = original(nbcolumns, n_components)
        return max(count, min(nbcolumns, 1))

    base.int_n_components = int_n_components

    svd = base.TruncatedSVDWrapper
    get_model = svd._get_model
    if "_nbcols(X)" not in _source(get_model):
        raise CompatError("TruncatedSVDWrapper._get_model changed")

    @functools.wraps(get_model)
    def _get_model(self: Any, X: Any, y: Any = None) -> Any:
        if base._nbcols(X) < 2:
            return FunctionTransformer()
        model = get_model(self, X, y)
        model.n_components = max(min(model.n_components, X.shape[0] - 1), 1)
        return model

    svd._get_model = _get_model


def float_text_counts() -> None:
    """transformers/text.py: CountVectorizerWrapper forces dtype int32 on
    its vectorizer "to limit memory"; LightGBM 4 builds its Dataset from a
    sparse matrix's values only when they are float32 or float64 ("Expected
    np.float32 or np.float64, met type(int32)"), so word counts straight
    into LightGBM failed. float32 takes the same memory (and TfidfVectorizer
    turned int32 into float64 anyway, with a warning)."""
    from aikit.transformers import text

    original = text.CountVectorizerWrapper._get_model
    if 'other_params["dtype"] = "int32"' not in _source(original):
        raise CompatError("CountVectorizerWrapper._get_model no longer forces int32")

    @functools.wraps(original)
    def _get_model(self: Any, X: Any, y: Any = None) -> Any:
        model = original(self, X, y)
        if "dtype" not in (self.other_count_vectorizer_arguments or {}):
            model.dtype = np.float32
        return model

    text.CountVectorizerWrapper._get_model = _get_model


def block_search_default_parameters() -> None:
    """ml_machine/ml_machine.py: RandomModelGenerator._iterate_block_search_models
    (aikit's block search: the default models on some column blocks) takes
    each step's parameters from MODEL_REGISTER.informations[...]
    ["default_parameters"], which model_registrer.py never fills in (it
    leaves that key out of informations): every step got its class defaults,
    drop_unused_columns=False for the encoders. An encoder then passed the
    columns of the other blocks through: raw text reached LightGBM ("pandas
    dtypes must be int, float or bool ... name: object"), and a column
    selected on two branches came twice (NumImputer: "too many indices for
    array"). Not an upstream change. The block search now gets the default
    parameters the default phase uses (MODEL_REGISTER.default_hyper_parameters).
    draw_random_graph writes columns_to_use into the parameter dicts it is
    given (add_columns_selector), and those are the register's own: it now
    works on a copy, or one draft's columns would leak into the next (and
    into another table's drafts in the same process)."""
    from aikit.ml_machine import ml_machine
    from aikit.ml_machine.ml_machine_registration import MODEL_REGISTER

    source = _source(ml_machine.RandomModelGenerator._iterate_block_search_models)
    if "MODEL_REGISTER.informations.get(model_name, {}).get(" not in source:
        raise CompatError(
            "RandomModelGenerator._iterate_block_search_models no longer reads informations' default_parameters"
        )
    for key, defaults in MODEL_REGISTER.default_hyper_parameters.items():
        informations = MODEL_REGISTER.informations.setdefault(key, {})
        informations.setdefault("default_parameters", dict(defaults))

    generator = ml_machine.RandomModelGenerator
    draw = generator.draw_random_graph

    @functools.wraps(draw)
    def draw_random_graph(
        self: Any, blocks_to_use: Any = None, models_by_steps: Any = None, hyper_parameters_by_step: Any = None
    ) -> Any:
        if hyper_parameters_by_step is not None:
            hyper_parameters_by_step = copy.deepcopy(hyper_parameters_by_step)
        return draw(self, blocks_to_use, models_by_steps, hyper_parameters_by_step)

    generator.draw_random_graph = draw_random_graph


def string_column_names() -> None:
    """tools/data_structure_helper.py: generic_hstack names the columns of a
    sparse part by position (0, 1, ...) beside the named columns of the
    other parts, e.g. a TruncatedSVDWrapper with drop_used_columns=False
    after a CountVectorizerWrapper keeps the word counts (0..n) next to
    SVD__0... scikit-learn 1.2 made such mixed int/str column names an error
    in every estimator ("Feature names are only supported if all input
    features have string names"; a warning since 1.0). A DataFrame it makes
    with mixed names now has them all as strings. generic_hstack is
    imported by name in pipeline.py, transformers/base.py and
    transformers/target.py, so each reference is replaced."""
    from aikit import pipeline
    from aikit.tools import data_structure_helper as dsh
    from aikit.transformers import base, target

    original = dsh.generic_hstack
    modules = (dsh, pipeline, base, target)
    for module in modules:
        if module.generic_hstack is not original:
            raise CompatError(f"{module.__name__}.generic_hstack is not aikit's generic_hstack")

    @functools.wraps(original)
    def generic_hstack(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        columns = getattr(result, "columns", None)
        if columns is not None and len({isinstance(c, str) for c in columns}) > 1:
            names = [c if isinstance(c, str) else str(c) for c in columns]
            if len(set(names)) < len(names):
                names = [c if isinstance(c, str) else f"_{c}" for c in columns]
            result.columns = names
        return result

    for module in modules:
        module.generic_hstack = generic_hstack


def kernel_cdf_in_numpy() -> None:
    """transformers/base.py: CdfScaler's "kernel" distribution (every column
    of at most 1,000 rows under "auto-nonparam") evaluated statsmodels'
    KDEMultivariate.cdf one point at a time in Python: one 5-fold candidate
    on titanic took 55 s (28 s with this patch), held a worker for most of
    a 60 s budget. Not an upstream change. The same sum in numpy
    (services.runner.kernel_cdf)."""
    from aikit.transformers import base
    from statsmodels.nonparametric.kernel_density import KDEMultivariate

    from services.runner.kernel_cdf import KernelCdf

    if base.KDEMultivariate is not KDEMultivariate:
        raise CompatError("aikit's transformers/base.py no longer fits statsmodels' KDEMultivariate")
    base.KDEMultivariate = KernelCdf


def _source(function: Any) -> str:
    import inspect

    return inspect.getsource(function)


RUNTIME_PATCHES: tuple[Callable[[], None], ...] = (
    features_selector_random_state,
    create_cv_without_shuffle,
    search_space_values,
    guider_missing_columns,
    guider_metric_target,
    target_transformer_over_blocks,
    unique_reduction_column_names,
    reduction_components,
    float_text_counts,
    block_search_default_parameters,
    string_column_names,
    kernel_cdf_in_numpy,
)
