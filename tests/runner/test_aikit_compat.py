"""aikit 0.2.2 on the pinned stack, through services.runner.aikit_compat:
every module the runner uses imports, and a real search runs with no
candidate failing for an incompatibility."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.runner import aikit_compat
from tests.conftest import ROOT


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_every_module_the_runner_uses_imports():
    result = run_python(
        "import sys\n"
        "from services.runner import aikit_compat\n"
        "aikit_compat.load()\n"
        "missing = [m for m in aikit_compat.MODULES if m not in sys.modules]\n"
        "print('missing', missing)\n"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "missing []" in result.stdout
    assert "I wont be able" not in result.stdout, "aikit's import notices go to the log, not stdout"


def test_importing_aikit_first_is_refused():
    result = run_python("import aikit\nfrom services.runner import aikit_compat\naikit_compat.load()\n")
    assert result.returncode != 0
    assert "aikit was imported before services.runner.aikit_compat.load()" in result.stderr


def test_another_stack_fails_at_start_naming_the_package(monkeypatch):
    monkeypatch.setitem(aikit_compat.TESTED, "scikit-learn", "0.23.2")
    with pytest.raises(aikit_compat.CompatError, match=r"scikit-learn 1\.5\.2 \(tested: 0\.23\.2\)"):
        aikit_compat._check_versions()


def test_a_patch_whose_target_moved_fails_loudly():
    def moved() -> None:
        raise AttributeError("module 'sklearn.utils' has no attribute '_safe_indexing'")

    with pytest.raises(aikit_compat.CompatError, match="patch moved no longer applies"):
        aikit_compat._apply(moved)


@pytest.mark.slow
def test_a_real_search_has_no_incompatibility_errors(tmp_path):
    """Twenty candidates drawn by aikit's own queue (defaults, exploration,
    guided proposals past ten results), cross-validated by aikit's job runner,
    in a fresh process so that nothing else has touched aikit."""
    code = f"""
import json
from services.runner import aikit_compat
aikit_compat.load()
from sklearn.datasets import load_breast_cancer
from aikit.ml_machine import AutoMlConfig, JobConfig, MlJobRunner, AutoMlResultReader, AutoMlModelGuider
from aikit.ml_machine.ml_machine import JobManagerQueue
from aikit.ml_machine.data_persister import FolderDataPersister, SavingType

X, y = load_breast_cancer(return_X_y=True, as_frame=True)
config = AutoMlConfig(dfX=X, y=y)
config.guess_everything()
job = JobConfig()
job.guess_cv(auto_ml_config=config, n_splits=3)
job.guess_scoring(auto_ml_config=config)
persister = FolderDataPersister(base_folder={str(tmp_path)!r})
guider = AutoMlModelGuider(result_reader=AutoMlResultReader(persister), job_config=job)
queue = JobManagerQueue(config, job, guider, persister, random_state=0)
runner = MlJobRunner(X, y, None, config, job, persister, seed=0)
runner.prepare()
report = []
for _ in range(20):
    job_id = queue.remove()
    param = persister.read(job_id, path="job_param", write_type=SavingType.json)
    failed, out = runner.do_job(job_id, param)
    report.append({{"type": param["job_type"], "error": out if failed else None,
                    "model": str(param["model_json"])[:60]}})
print("REPORT" + json.dumps(report))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = __import__("json").loads(result.stdout.split("REPORT", 1)[1])
    assert len(report) == 20
    assert [r for r in report if r["error"]] == [], "no candidate fails"
    assert {r["type"] for r in report} >= {"default", "exploration", "guided"}


# ------------------------------------------------ run-time patches, in process


@pytest.fixture(scope="module")
def aikit():
    return aikit_compat.load()


def small_table(rows: int = 120, seed: int = 0):
    """Numbers, a category and a short text: three of aikit's column blocks."""
    import numpy as np
    import pandas as pd

    rng = np.random.RandomState(seed)
    words = np.array(["red car", "blue van", "old truck", "new bike", "fast car", "slow van"])
    X = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.normal(size=rows),
            "colour": rng.choice(["x", "y", "z"], size=rows),
            "label": [f"a {w} seen on day {i}" for i, w in enumerate(rng.choice(words, size=rows))],
        }
    )
    y = pd.Series(20 + 3 * X["a"] - X["b"] + (X["colour"] == "x") + rng.normal(scale=0.1, size=rows))
    return X, y


def test_the_guider_fits_on_perfect_and_constant_scores(aikit, tmp_path):
    """Past ten results aikit's guider fits a forest on its transformation of
    the scores: -log10(1 - accuracy) is inf for a perfect one, and the
    standardization of a scorer every candidate tied on is 0/0; both gave
    "Input y contains NaN" and ended the guided search on easy tables."""
    import numpy as np
    import pandas as pd
    from aikit.ml_machine import AutoMlConfig, AutoMlModelGuider, AutoMlResultReader, JobConfig
    from aikit.ml_machine.data_persister import FolderDataPersister, SavingType
    from aikit.ml_machine.ml_machine import RandomModelGenerator
    from aikit.ml_machine.model_graph import convert_graph_to_code
    from aikit.tools.helper_functions import md5_hash

    X, y = small_table()
    config = AutoMlConfig(dfX=X[["a", "b"]], y=(y > 20).astype(int))
    config.guess_everything()
    scorers = ["accuracy", "balanced_accuracy", "avg_roc_auc", "log_loss_patched"]
    job = JobConfig()
    job.scoring, job.main_scorer = scorers, scorers[0]
    persister = FolderDataPersister(base_folder=str(tmp_path))
    generator = RandomModelGenerator(auto_ml_config=config, random_state=0)
    for i in range(12):
        graph, params, blocks = generator.draw_random_graph()
        job_id = md5_hash(convert_graph_to_code(graph, params)) + str(i)
        param = {"Graph": {"nodes": list(graph.nodes), "edges": list(graph.edges)}, "all_models_params": params}
        param.update(blocks_to_use=blocks, job_id=job_id)
        persister.write(data=param, key=job_id, path="param", write_type=SavingType.json)
        accuracy = 1.0 if i == 0 else 0.8 + i / 100  # one perfect candidate
        rows = pd.DataFrame(
            {
                "test_accuracy": [accuracy] * 5,
                "test_balanced_accuracy": [0.9] * 5,  # every candidate ties: a constant column
                "test_avg_roc_auc": [1.0] * 5,  # every candidate perfect
                "test_log_loss_patched": [-0.1 - i / 50] * 5,
                "fold_nb": range(5),
            }
        )
        persister.write(data=rows, key=job_id, path="result", write_type=SavingType.csv)
    guider = AutoMlModelGuider(result_reader=AutoMlResultReader(persister), job_config=job)
    np.random.seed(0)
    guider.fit_metric_model()
    assert guider.random_forest is not None
    drafts = []
    for n in range(5):
        graph, params, blocks = generator.draw_random_graph()
        drafts.append({"Graph": {"nodes": list(graph.nodes), "edges": list(graph.edges)}, "all_models_params": params})
        drafts[-1].update(blocks_to_use=blocks, job_id=str(n))
    mean, variance = guider.predict_metric(drafts)
    assert np.isfinite(mean).all() and np.isfinite(variance).all()


def test_box_cox_over_several_column_blocks_cross_validates(aikit):
    """aikit's generator puts the target transformer above every block's
    first step; its conversion made BoxCoxTargetTransformer([branch, branch])
    a GraphPipeline step, which GraphPipeline refused."""
    import networkx as nx
    from aikit.cross_validation import cross_validation
    from aikit.ml_machine.model_graph import convert_graph_to_code
    from aikit.model_definition import sklearn_model_from_param
    from sklearn.model_selection import KFold

    X, y = small_table()
    box = ("TargetTransformer", ("TargetTransformer", "BoxCoxTargetTransformer"))
    num = ("Selector_NUM", ("Selector_NUM", "ColumnsSelector"))
    cat = ("CategoryEncoder", ("CategoryEncoder", "NumericalEncoder"))
    model = ("Model", ("Model", "Ridge"))
    graph = nx.DiGraph([(box, num), (box, cat), (num, model), (cat, model)])
    params = {box: {"ll": 0.5}, num: {"columns_to_use": ["a", "b"]}, cat: {"columns_to_use": ["colour"]}, model: {}}
    code = convert_graph_to_code(graph, params)
    assert code[0] == "BoxCoxTargetTransformer" and code[1][0] == "GraphPipeline", code
    result = cross_validation(
        sklearn_model_from_param(code),
        X[["a", "b", "colour"]],
        y,
        cv=KFold(3, shuffle=True, random_state=0),
        scoring=["r2"],
        verbose=0,
    )
    assert len(result) == 3 and (result["test_r2"] > 0.9).all()


def test_two_svd_steps_give_lightgbm_distinct_feature_names(aikit):
    """A dimension reduction after a text SVD, each keeping its input
    (drop_used_columns=False), named two columns SVD__0; LightGBM refuses
    duplicate feature names since version 3."""
    from aikit.cross_validation import cross_validation
    from aikit.model_definition import sklearn_model_from_param
    from sklearn.model_selection import KFold

    X, y = small_table()
    svd = ("TruncatedSVDWrapper", {"n_components": 2, "random_state": 0, "drop_used_columns": False})
    code = (
        "GraphPipeline",
        {
            "models": {"svd1": svd, "svd2": svd, "lgbm": ("LGBMRegressor", {"n_estimators": 20, "verbose": -1})},
            "edges": [("svd1", "svd2", "lgbm")],
        },
    )
    model = sklearn_model_from_param(code)
    features = model.models["svd2"].fit_transform(model.models["svd1"].fit_transform(X[["a", "b"]]))
    assert features.columns.is_unique, list(features.columns)
    assert len(model.models["svd2"].get_feature_names()) == features.shape[1]
    result = cross_validation(
        sklearn_model_from_param(code), X[["a", "b"]], y, cv=KFold(3, shuffle=True, random_state=0), scoring=["r2"]
    )
    assert len(result) == 3


def test_one_column_keeps_one_component(aikit):
    """int_n_components gave 0 components for a single column: TruncatedSVD
    refuses it and a features selector kept no column at all."""
    from aikit.transformers import FeaturesSelectorRegressor, TruncatedSVDWrapper

    X, y = small_table()
    assert TruncatedSVDWrapper(n_components=0.35).fit_transform(X[["a"]]).shape == (len(X), 1)
    assert FeaturesSelectorRegressor(n_components=0.2).fit_transform(X[["a"]], y).shape == (len(X), 1)


def test_svd_components_stay_below_rows_and_text_svd_draws_its_own_range(aikit):
    """titanic: a text SVD drew 0.85 of a ~40,000-column character n-gram
    vocabulary (~34,000 components of 713 rows) and blew the memory limit."""
    import numpy as np
    import pandas as pd
    from aikit.ml_machine.ml_machine_registration import MODEL_REGISTER
    from aikit.transformers import TruncatedSVDWrapper

    wide = pd.DataFrame(np.random.RandomState(0).normal(size=(20, 50))).add_prefix("c")
    assert TruncatedSVDWrapper(n_components=0.9).fit_transform(wide).shape == (20, 19)
    space = MODEL_REGISTER.hyper_parameters[("TextDimensionReduction", "TruncatedSVDWrapper")]
    drawn = [space.get_rand()["n_components"] for _ in range(20)]
    assert all(isinstance(n, (int, np.integer)) and 10 <= n <= 500 for n in drawn), drawn


def test_lightgbm_beside_a_text_column_in_block_search_pipelines(aikit):
    """aikit's block search built its steps with their class defaults: an
    encoder with drop_unused_columns=False passed the raw text column on to
    LightGBM, which refuses object columns; word counts came as int32 sparse
    values, which LightGBM 4 refuses too."""
    from aikit.ml_machine import AutoMlConfig
    from aikit.ml_machine.ml_machine import RandomModelGenerator
    from aikit.ml_machine.model_graph import convert_graph_to_code
    from aikit.model_definition import sklearn_model_from_param

    X, y = small_table()
    config = AutoMlConfig(dfX=X, y=y)
    config.guess_everything()
    assert list(config.columns_block) == ["NUM", "CAT", "TEXT"]
    generator = RandomModelGenerator(auto_ml_config=config, random_state=0)
    tried = 0
    for graph, params, blocks in generator.iterate_block_search(random_order=False):
        code = convert_graph_to_code(graph, params)
        if "LGBMRegressor" not in str(code) or len(blocks) < 2:
            continue
        model = sklearn_model_from_param(code)
        model.set_params(**{k: 5 for k in model.get_params() if k.endswith("n_estimators")})
        model.fit(X, y)
        assert model.predict(X).shape == (len(X),)
        tried += 1
    assert tried >= 2
    words_only = (
        "GraphPipeline",
        {
            "models": {
                "words": ("CountVectorizerWrapper", {"columns_to_use": ["label"]}),
                "lgbm": ("LGBMRegressor", {"n_estimators": 5, "verbose": -1}),
            },
            "edges": [("words", "lgbm")],
        },
    )
    assert sklearn_model_from_param(words_only).fit(X, y).predict(X).shape == (len(X),)
    # The register's default parameters are not written into: another table's drafts name only its own columns.
    X.loc[:5, "a"] = float("nan")  # an imputer step too
    for table in (X, X.add_suffix("_2")):
        config = AutoMlConfig(dfX=table, y=y)
        config.guess_everything()
        for _, params, _ in RandomModelGenerator(auto_ml_config=config, random_state=0).iterate_block_search():
            named = {c for p in params.values() for c in p.get("columns_to_use", [])}
            assert named <= set(table.columns), named


def test_svd_keeping_sparse_word_counts_gives_string_column_names(aikit):
    """Word counts (a sparse matrix: columns named 0, 1, ...) kept beside
    SVD__0 made mixed int/str column names, which scikit-learn 1.2 refuses."""
    from aikit.model_definition import sklearn_model_from_param

    X, y = small_table()
    code = (
        "GraphPipeline",
        {
            "models": {
                "words": ("CountVectorizerWrapper", {"columns_to_use": ["label"]}),
                "svd": ("TruncatedSVDWrapper", {"n_components": 2, "drop_used_columns": False}),
                "forest": ("RandomForestRegressor", {"n_estimators": 5, "random_state": 0}),
            },
            "edges": [("words", "svd", "forest")],
        },
    )
    assert sklearn_model_from_param(code).fit(X, y).predict(X).shape == (len(X),)


def test_cdf_scaler_kernel_gives_statsmodels_values_without_its_point_by_point_loop(aikit):
    """ "auto-nonparam" picks a kernel density for each column of at most
    1,000 rows; statsmodels evaluated its cdf one Python call per point
    (55 s for one titanic candidate). The numpy sum must give the same values
    (its speed: bench/README.md)."""
    import pickle

    import numpy as np
    import pandas as pd
    from aikit.transformers import CdfScaler
    from statsmodels.nonparametric.kernel_density import KDEMultivariate

    from services.runner.kernel_cdf import KernelCdf

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"gamma": rng.gamma(2, size=600), "ties": rng.integers(0, 40, 600).astype(float)})
    scaler = CdfScaler(distribution="auto-nonparam", output_distribution="uniform", random_state=0).fit(frame)
    fitted = scaler.model.fitted_distributions
    assert all(isinstance(fitted[col], KernelCdf) for col in frame.columns)
    new = pd.DataFrame({"gamma": rng.normal(2, 3, 300), "ties": rng.integers(-5, 45, 300).astype(float)})
    for col in frame.columns:
        reference = KDEMultivariate(data=fitted[col].data, var_type="c", bw=fitted[col].bw)
        expected = reference.cdf(new[col].to_numpy())
        got = fitted[col].cdf(new[col].to_numpy())
        assert np.allclose(got, expected, rtol=0, atol=1e-12)
        assert np.allclose(fitted[col].cdf(), reference.cdf(), rtol=0, atol=1e-12)
    assert fitted["gamma"].cdf(np.array([2.0])).shape == reference.cdf(np.array([2.0])).shape == ()
    again = pickle.loads(pickle.dumps(scaler))  # a trained model is kept pickled
    assert np.array_equal(again.transform(new), scaler.transform(new))
