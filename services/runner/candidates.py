"""The candidates of one run: a fixed portfolio of configurations known to be
strong on tabular data first (services.runner.portfolio), then aikit's random
exploration and, past ten results, its proposals guided by a model of the
results so far. A failure of aikit's guider does not end the run: the draw
falls back to exploration, and the run gets a note saying so.

aikit's generator talks to its guider through files (a FolderDataPersister);
the run keeps such a folder of its own and writes every result there, so the
guider sees what the runner saw. The guided phase draws from numpy's global
random state (np.random.choice, a RandomForest without a seed): each draw
runs with the run's own state swapped in, under a lock, so that runs sharing
a process do not disturb each other and a seed reproduces its candidates.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.common.errors import InvalidArgument
from automl.v1 import common_pb2 as c
from services.runner import aikit_compat, portfolio

log = logging.getLogger("automl.runner.candidates")

_GLOBAL_RNG = threading.Lock()
MAX_DUPLICATE_DRAWS = 200


@dataclass(frozen=True)
class Candidate:
    job_id: str
    """aikit's id: md5 of the model description."""
    job_type: str
    """portfolio, block_search, exploration or guided (aikit's names but the first)."""
    job_param: dict[str, Any]
    """What a worker needs: model_json, stopping_round, stopping_threshold."""
    model_json: str
    """The model description in aikit's JSON encoding."""
    model_family: str
    pipeline_steps: list[str]
    work: float = 1.0
    """Relative cost of its model per row (its trees or boosting rounds over 100): what its time scales with."""


class Exhausted(Exception):
    """The generator keeps proposing candidates already evaluated."""


class Closed(Exception):
    """The run is over: no more candidates (a draw left running in its thread ends with this)."""


def available_families(X: pd.DataFrame, y: pd.Series[Any], task: c.Task) -> list[str]:
    """aikit model names that suit the task on this table."""
    return [name for step, name in _config(X, y, task).models_to_keep if step == "Model"]


def _config(X: pd.DataFrame, y: pd.Series[Any], task: c.Task) -> Any:
    aikit_compat.load()
    from aikit.enums import TypeOfProblem
    from aikit.ml_machine import AutoMlConfig

    config = AutoMlConfig(dfX=X, y=y)
    config.guess_everything()
    # The experiment decided the task; aikit's guess may differ (e.g. integer classes).
    wanted = TypeOfProblem.REGRESSION if task == c.TASK_REGRESSION else TypeOfProblem.CLASSIFICATION
    if config.type_of_problem != wanted:
        config.type_of_problem = wanted
    return config


class Candidates:
    """The run's candidate stream; next() draws one, record() feeds a result back."""

    def __init__(
        self,
        X: pd.DataFrame,
        y: pd.Series[Any],
        task: c.Task,
        families: list[str],
        scorer_names: list[str],
        folds: int,
        seed: int,
        folder: Path,
    ) -> None:
        aikit_compat.load()
        from aikit.ml_machine import AutoMlModelGuider, AutoMlResultReader, JobConfig
        from aikit.ml_machine.data_persister import FolderDataPersister, SavingType
        from aikit.ml_machine.ml_machine import JobManagerQueue

        self._saving = SavingType
        config = _config(X, y, task)
        if families:
            known = [name for step, name in config.models_to_keep if step == "Model"]
            unknown = [f for f in families if f not in known]
            if unknown:
                raise InvalidArgument.field(
                    "experiment.allowed_model_families",
                    f"unknown for {c.Task.Name(task)}: {', '.join(unknown)}; known: {', '.join(known)}",
                )
            config.filter_models(Model=list(families))
            config.guess_models_to_keep_block_search()
        job = JobConfig()
        job.guess_cv(config, n_splits=folds)
        job.cv.random_state = seed % 2**32  # the folds the workers use (aikit's guess seeds them with 123)
        job.scoring = list(scorer_names)
        job.main_scorer = scorer_names[0]
        # The portfolio replaces aikit's default phase (its defaults are in it, with more trees).
        job.start_with_default = False
        # aikit's block search (its default models on subsets of the column blocks) drew
        # pipelines whose imputer expects columns its inputs do not carry ("Column ... isn't
        # in the columns"); exploration already draws subsets of blocks.
        job.do_blocks_search = False
        folder.mkdir(parents=True, exist_ok=True)
        self.persister = FolderDataPersister(base_folder=str(folder))
        guider = AutoMlModelGuider(result_reader=AutoMlResultReader(self.persister), job_config=job)
        self._state = np.random.RandomState(seed % 2**32)
        with self._own_random_state():
            self.queue = JobManagerQueue(
                config, job, guider, self.persister, random_state=np.random.RandomState(seed % 2**32)
            )
        self._portfolio = list(portfolio.entries(config, len(y), X.shape[1], seed))
        self._guided = True
        self.notes: list[str] = []
        """Lines for the run's notes (a fallback taken); the run takes them as they come."""
        self.seen: set[str] = set()
        self.closed = False

    def close(self) -> None:
        """The run is over and its folder about to go. A draw still under way
        in its thread (a guided fit outlives the deadline that abandoned it)
        then fails quietly with Closed, not as the guider's failure: no
        warning, no note, for a run that has ended."""
        self.closed = True

    @contextlib.contextmanager
    def _own_random_state(self) -> Iterator[None]:
        # The guider's forest warns on every draw ("X has feature names...");
        # under the lock, so that silencing them cannot race another run.
        with _GLOBAL_RNG, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = np.random.get_state()
            np.random.set_state(self._state.get_state())
            try:
                yield
            finally:
                self._state.set_state(np.random.get_state())
                np.random.set_state(saved)

    def next(self) -> Candidate:
        """Draw a candidate not evaluated yet in this run (blocking: the guided
        phase fits a model; call it from a thread)."""
        if self.closed:
            raise Closed("the run is over")
        for _ in range(MAX_DUPLICATE_DRAWS):
            with self._own_random_state():
                job_id = self._draw()
            if job_id in self.seen:
                continue
            self.seen.add(job_id)
            return self._candidate(job_id)
        raise Exhausted(f"the generator proposed only evaluated candidates {MAX_DUPLICATE_DRAWS} times in a row")

    def _draw(self) -> str:
        """The next job id, its description written to the run's aikit folder."""
        if self._portfolio:
            entry = self._portfolio.pop(0)
            return self._write(self._graph(entry.models_by_steps, entry.hyper_by_step), "portfolio")
        if self._guided:
            try:
                return str(self.queue.remove())
            except Exception as exc:  # any failure of aikit's guider or a proposal: explore instead
                if self.closed:  # its folder went while it fitted: not the guider's failure
                    raise Closed("the run is over") from exc
                self._guided = False
                note = (
                    f"aikit's guided search failed ({type(exc).__name__}: {str(exc)[:200]}): "
                    "candidates are drawn at random for the rest of the run"
                )
                log.warning("guided search failed; exploring", extra={"error": repr(exc)})
                self.notes.append(note)
        return self._write(self.queue.random_model_generator.draw_random_graph(), "exploration")

    def _graph(self, models_by_steps: OrderedDict[str, tuple[Any, Any]], hyper: dict[Any, dict[str, Any]]) -> Any:
        generator = self.queue.random_model_generator
        blocks = tuple(generator.auto_ml_config.columns_block.keys())  # every block, as aikit's defaults
        return generator.draw_random_graph(
            blocks_to_use=blocks, models_by_steps=models_by_steps, hyper_parameters_by_step=hyper
        )

    def _write(self, drawn: tuple[Any, Any, Any], job_type: str) -> str:
        """What aikit's JobManagerQueue.remove writes for a job (its param and
        job_param files, which its guider reads back), for a graph drawn here."""
        from aikit.ml_machine.model_graph import convert_graph_to_code
        from aikit.tools.helper_functions import md5_hash

        graph, params, blocks = drawn
        code = convert_graph_to_code(graph, params)
        job_id = md5_hash(code)
        param = {
            "Graph": {"nodes": list(graph.nodes), "edges": list(graph.edges)},
            "all_models_params": params,
            "blocks_to_use": blocks,
            "job_id": job_id,
        }
        job_param = {"model_json": code, "job_type": job_type, "cv_type": "full"}
        self.persister.write(data=param, key=job_id, path="param", write_type=self._saving.json)
        self.persister.write(data=job_param, key=job_id, path="job_param", write_type=self._saving.json)
        return str(job_id)

    def _candidate(self, job_id: str) -> Candidate:
        from aikit.tools.json_helper import json_encoder

        job_param = self.persister.read(job_id, path="job_param", write_type=self._saving.json)
        model = job_param["model_json"]
        family, steps = describe(model)
        return Candidate(
            job_id=job_id,
            job_type=job_param.get("job_type", ""),
            job_param={"model_json": model},
            # What aikit's save_json writes (its SpecialJSONEncoder.encode encodes twice).
            model_json=json.dumps(json_encoder(model)),
            model_family=family,
            pipeline_steps=steps,
            work=work(model),
        )

    def record(self, job_id: str, rows: list[dict[str, Any]] | None, error: str = "") -> None:
        """Tell the guider how a candidate did (rows: aikit's score table)."""
        if rows is not None:
            # aikit's result file: what its guider reads.
            self.persister.write(data=pd.DataFrame(rows), key=job_id, path="result", write_type=self._saving.csv)
        else:
            self.persister.write(data=error, key=job_id, path="error", write_type=self._saving.txt)


def describe(model: Any) -> tuple[str, list[str]]:
    """(final estimator, steps in order) of an aikit model description:
    (class, *args, params) for one model, where an argument may itself be a
    model (a wrapper such as BoxCoxTargetTransformer(Ridge)), or
    ("GraphPipeline", {"models": {name: model}, "edges": [(a, b, ...), ...]})."""
    try:
        return _describe(model)
    except (TypeError, ValueError, KeyError, IndexError):  # an unforeseen shape: show it whole
        return str(model)[:100], []


DART_TREES_PER_DOUBLING = 300
"""LightGBM's dart boosting predicts with the trees it drops at every round, so
its time grows with the square of its trees: measured on 200 and 2,000 rows,
1.4-3.8 times plain boosting at 50-800 trees, 7.7-12.7 at 3,200."""


def work(model: Any) -> float:
    """n_estimators / 100 of the final estimator of a description (1 without);
    for dart boosting, times 1 + n_estimators / 300. aikit draws dart with up
    to 10,000 trees: 40 s a fold on 240 rows, a worker lost to a candidate
    that was predicted to take seconds."""
    try:
        params = _final(model)[-1]
        trees = max(float(params.get("n_estimators", 100)), 1.0)
        dart = params.get("boosting_type") == "dart"
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return 1.0
    return trees / 100 * (1 + trees / DART_TREES_PER_DOUBLING if dart else 1.0)


def _is_model(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) >= 2 and isinstance(value[0], str) and isinstance(value[-1], dict)


def _final(model: Any) -> Any:
    """The final estimator's description: through pipelines (the step no edge
    leaves) and wrappers (their innermost model)."""
    while True:
        if str(model[0]) == "GraphPipeline":
            params = model[-1]
            sources = {n for edge in params.get("edges", []) for n in edge[:-1]}
            models = params["models"]
            sinks = [m for name, m in models.items() if name not in sources]
            model = sinks[-1] if sinks else list(models.values())[-1]
            continue
        inner = [arg for arg in model[1:-1] if _is_model(arg)]
        if not inner:
            return model
        model = inner[-1]


def _describe(model: Any) -> tuple[str, list[str]]:
    return str(_final(model)[0]), _steps(model)


def _steps(model: Any) -> list[str]:
    kind = str(model[0])
    if kind != "GraphPipeline":
        inner = [arg for arg in model[1:-1] if _is_model(arg)]
        return [kind, *_steps(inner[-1])] if inner else [kind]
    params = model[-1]
    models, edges = params["models"], params.get("edges", [])
    # In the order data flows (an edge (a, b, c) is the chain a -> b -> c),
    # steps that could come in either order as they first appear in the edges.
    seen = [n for edge in edges for n in edge]
    appearance = {n: i for i, n in reversed(list(enumerate([*seen, *models])))}
    before: dict[str, set[str]] = {n: set() for n in appearance}
    for edge in edges:
        for a, b in itertools.pairwise(edge):
            before[b].add(a)
    order: list[str] = []
    while len(order) < len(before):
        ready = [n for n in before if n not in order and before[n] <= set(order)]
        if not ready:  # a cycle: not a pipeline aikit makes; list the rest as they appear
            ready = [n for n in before if n not in order]
        order.append(min(ready, key=appearance.__getitem__))
    return [step for name in order for step in _steps(models[name])]
