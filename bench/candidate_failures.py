"""How many of aikit's candidates fail on the pinned stack, per table, and why.

For each table: the candidates aikit's own queue drafts (JobManagerQueue:
its default models first, then random exploration and, past ten results,
proposals of its guider), each cross-validated (5 folds, seeded) by the
runner's worker (services.runner.worker.Evaluator) in a worker process of
services.runner.workers.Pool, which enforces the per-candidate time limit and
a memory limit by killing it. Every result is written to the queue's aikit
folder as the runner's candidates.py does (FolderDataPersister), so the guider
sees what the runner would. A guider failure is counted and the draw falls
back to exploration, as in candidates.py.

Data are read the way the runner reads them: problem.read_csv with the
default CSV options, identifier columns dropped (the storage profile's rule:
a row counter, or text distinct on every row without spaces), the holdout
split off (problem.prepare), sanitized column names. scikit-learn's tables
are written to CSV and read back.

    .venv/bin/python bench/candidate_failures.py [--per-table 40] [--tables iris glass] [--time-limit 30]

Prints, per table: drafted, succeeded, failed (errors), timed out, out of
memory, guider failures, then the failures grouped by error.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import logging
import pickle
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from automl.v1 import common_pb2 as c  # noqa: E402
from automl.v1 import dataset_pb2, experiment_pb2  # noqa: E402
from services.runner import aikit_compat, problem, scoring, workers  # noqa: E402

DATASETS = Path("/work/shared/datasets")
FOLDS = 5
SEED = 42
MEMORY_LIMIT = 4 * 2**30


def _sklearn(loader: str, target: str) -> pd.DataFrame:
    import sklearn.datasets

    X, y = getattr(sklearn.datasets, loader)(return_X_y=True, as_frame=True)
    frame = X.assign(**{target: y})
    text = frame.to_csv(index=False)  # written to CSV and read back, as an upload would be
    return problem.read_csv(io.StringIO(text), c.CsvOptions())  # type: ignore[arg-type]


def _shared(name: str, rows: int = 0) -> pd.DataFrame:
    frame = problem.read_csv(DATASETS / name, c.CsvOptions())
    if rows and len(frame) > rows:
        frame = frame.sample(rows, random_state=SEED).reset_index(drop=True)
    return frame


# name -> (frame loader, target, task)
TABLES = {
    "auto-mpg": (lambda: _shared("auto-mpg.csv"), "mpg", c.TASK_REGRESSION),
    "titanic": (lambda: _shared("titanic.csv"), "Survived", c.TASK_CLASSIFICATION),
    "glass": (lambda: _shared("glass.csv"), "Type", c.TASK_CLASSIFICATION),
    "churn": (lambda: _shared("churn_modelling.csv", 2000), "Exited", c.TASK_CLASSIFICATION),
    "iris": (lambda: _sklearn("load_iris", "species"), "species", c.TASK_CLASSIFICATION),
    "digits": (lambda: _sklearn("load_digits", "digit"), "digit", c.TASK_CLASSIFICATION),
    "diabetes": (lambda: _sklearn("load_diabetes", "progression"), "progression", c.TASK_REGRESSION),
    "breast_cancer": (lambda: _sklearn("load_breast_cancer", "malignant"), "malignant", c.TASK_CLASSIFICATION),
}


def identifiers(frame: pd.DataFrame) -> list[str]:
    """Columns the storage profile calls identifiers (services/storage/csvprofile.py _type)."""
    out = []
    for name in frame.columns:
        values = frame[name].dropna()
        rows = len(frame)
        all_distinct = len(values) == rows >= 20 and values.nunique() == rows
        if not all_distinct:
            continue
        if pd.api.types.is_numeric_dtype(values):
            if (values == values.round()).all() and values.max() - values.min() + 1 == rows:
                out.append(name)
        elif values.astype(str).str.strip().str.count(" ").mean() < 0.5:
            out.append(name)
    return out


def load(name: str) -> tuple[pd.DataFrame, pd.Series, int]:
    """The search rows of a table, as problem.prepare makes them."""
    read, target, task = TABLES[name]
    frame = read()
    dataset = dataset_pb2.Dataset(
        columns=[
            dataset_pb2.ColumnProfile(name=col, inferred_type=c.COLUMN_TYPE_IDENTIFIER)
            for col in identifiers(frame.drop(columns=[target]))
        ]
    )
    experiment = experiment_pb2.Experiment(target_column=target, resolved_task=task, seed=SEED, cv_folds=FOLDS)
    data = problem.prepare(frame, dataset, experiment)
    return data.X, data.y, task


def error_kind(text: str) -> str:
    """An error message with its variable parts (numbers, quoted names) blurred, to group failures."""
    text = text.split(" (at ")[0] if " (at " in text else text
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:110]


async def run_table(name: str, per_table: int, time_limit: float) -> dict[str, object]:
    aikit_compat.load()
    from aikit.ml_machine import AutoMlConfig, AutoMlModelGuider, AutoMlResultReader, JobConfig
    from aikit.ml_machine.data_persister import FolderDataPersister, SavingType
    from aikit.ml_machine.ml_machine import JobManagerQueue

    X, y, task = load(name)
    primary = c.METRIC_R2 if task == c.TASK_REGRESSION else c.METRIC_ACCURACY
    scorer_names = [s.name for s in scoring.scorers(task, primary)]
    np.random.seed(SEED)  # the guided phase draws from numpy's global state
    with tempfile.TemporaryDirectory(prefix="candidate_failures_") as tmp:
        config = AutoMlConfig(dfX=X, y=y)
        config.guess_everything()
        job = JobConfig()
        job.guess_cv(config, n_splits=FOLDS)
        job.cv.random_state = SEED
        job.scoring = scorer_names
        job.main_scorer = scorer_names[0]
        persister = FolderDataPersister(base_folder=str(Path(tmp) / "aikit"))
        guider = AutoMlModelGuider(result_reader=AutoMlResultReader(persister), job_config=job)
        queue = JobManagerQueue(config, job, guider, persister, random_state=np.random.RandomState(SEED))
        data_path = Path(tmp) / "data.pkl"
        with data_path.open("wb") as f:
            pickle.dump((X, y), f, protocol=pickle.HIGHEST_PROTOCOL)
        setup = {
            "classification": task == c.TASK_CLASSIFICATION,
            "folds": FOLDS,
            "seed": SEED,
            "scorers": scorer_names,
        }
        pool = workers.Pool(1, str(data_path), setup)
        await pool.start()
        counts: collections.Counter[str] = collections.Counter()
        errors: collections.Counter[str] = collections.Counter()
        examples: dict[str, str] = {}
        seen: set[str] = set()
        guided = True
        started = time.monotonic()
        try:
            while counts["drafted"] < per_table:
                if guided:
                    try:
                        job_id = str(queue.remove())
                    except Exception as exc:  # noqa: BLE001 - as candidates.py: explore instead
                        guided = False
                        counts["guider failed"] += 1
                        kind = f"guider: {type(exc).__name__}: {error_kind(str(exc))}"
                        errors[kind] += 1
                        examples.setdefault(kind, repr(exc)[:300])
                        continue
                else:
                    job_id = _explore(queue, persister, SavingType)
                if job_id in seen:
                    counts["duplicates"] += 1
                    continue
                seen.add(job_id)
                job_param = persister.read(job_id, path="job_param", write_type=SavingType.json)
                counts["drafted"] += 1
                counts[str(job_param.get("job_type"))] += 1
                result = await pool.evaluate(job_id, {"model_json": job_param["model_json"]}, time_limit, MEMORY_LIMIT)
                if result.outcome == workers.Outcome.SUCCEEDED:
                    counts["succeeded"] += 1
                    rows = pd.DataFrame(result.rows)
                    persister.write(data=rows, key=job_id, path="result", write_type=SavingType.csv)
                    continue
                persister.write(data=result.error, key=job_id, path="error", write_type=SavingType.txt)
                if result.outcome == workers.Outcome.FAILED:
                    counts["failed"] += 1
                    kind = error_kind(result.error)
                    errors[kind] += 1
                    examples.setdefault(
                        kind, f"{result.error[:400]}\n      model: {str(job_param['model_json'])[:400]}"
                    )
                else:
                    counts[result.outcome.value] += 1
                    errors[f"[{result.outcome.value}] {_family(job_param['model_json'])}"] += 1
        finally:
            pool.close()
    return {
        "table": name,
        "rows": len(y),
        "counts": counts,
        "errors": errors,
        "examples": examples,
        "seconds": time.monotonic() - started,
    }


def _explore(queue: object, persister: object, saving: object) -> str:
    """One exploration draw written as JobManagerQueue.remove writes it (candidates.py _write)."""
    from aikit.ml_machine.model_graph import convert_graph_to_code
    from aikit.tools.helper_functions import md5_hash

    graph, params, blocks = queue.random_model_generator.draw_random_graph()  # type: ignore[attr-defined]
    code = convert_graph_to_code(graph, params)
    job_id = md5_hash(code)
    param = {"Graph": {"nodes": list(graph.nodes), "edges": list(graph.edges)}, "all_models_params": params}
    param.update(blocks_to_use=blocks, job_id=job_id)
    persister.write(data=param, key=job_id, path="param", write_type=saving.json)  # type: ignore[attr-defined]
    job_param = {"model_json": code, "job_type": "exploration", "cv_type": "full"}
    persister.write(data=job_param, key=job_id, path="job_param", write_type=saving.json)  # type: ignore[attr-defined]
    return str(job_id)


def _family(model: object) -> str:
    from services.runner.candidates import describe

    family, steps = describe(model)
    return " > ".join(steps) or family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-table", type=int, default=40, help="candidates to draft per table")
    parser.add_argument("--tables", nargs="*", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per candidate (worker killed)")
    parser.add_argument("--verbose", action="store_true", help="print one example per error kind")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the guider's forest warns on every draw
    logging.getLogger("aikit").setLevel(logging.ERROR)
    reports = []
    for name in args.tables:
        report = asyncio.run(run_table(name, args.per_table, args.time_limit))
        reports.append(report)
        counts = report["counts"]
        print(
            f"{name}: {counts['drafted']} drafted, {counts['failed']} failed in {report['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    columns = ["table", "rows", "drafted", "default", "exploration", "guided", "succeeded", "failed"]
    columns += ["timed_out", "out_of_memory", "guider failed"]
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    total: collections.Counter[str] = collections.Counter()
    for report in reports:
        counts = report["counts"]  # type: ignore[assignment]
        total.update(counts)  # type: ignore[arg-type]
        cells = [report["table"], report["rows"], *(counts[col] for col in columns[2:])]  # type: ignore[index]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")
    print("| total | | " + " | ".join(str(total[col]) for col in columns[2:]) + " |")
    print()
    for report in reports:
        errors = report["errors"]
        if not errors:
            continue
        print(f"{report['table']}:")
        for kind, n in errors.most_common():  # type: ignore[attr-defined]
            print(f"  {n:4d}  {kind}")
            if args.verbose and kind in report["examples"]:  # type: ignore[operator]
                print(f"        e.g. {report['examples'][kind]}")  # type: ignore[index]


if __name__ == "__main__":
    main()
