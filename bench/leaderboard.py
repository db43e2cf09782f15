"""Leaderboard query latency and result insert rate, on SQLite and PostgreSQL.

For each backend: a run with 10,000 model results x 5 folds (4 metrics each)
is inserted through the repository in batches of 1,000 (rows/s), then the
first leaderboard page (50 entries, ranked by the primary metric) and a deep
page are read repeatedly: median and p95 latency (goal: median < 50 ms).
The baseline printed beside them is the same SQL backend's bare
`SELECT count(*)` of the run's results, to show what the engine costs alone.
Each backend is measured twice: right after the inserts, and after ANALYZE
(the statistics a live server's autovacuum gathers within a minute).

    .venv/bin/python bench/leaderboard.py [--results 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automl.v1 import common_pb2 as c  # noqa: E402
from automl.v1 import run_pb2  # noqa: E402
from services.storage import db, schema  # noqa: E402
from services.storage.repository import MetadataStore, StoredContent  # noqa: E402
from tests.servers import PostgresServer, postgres_bindir  # noqa: E402

METRICS = (c.METRIC_ACCURACY, c.METRIC_BALANCED_ACCURACY, c.METRIC_F1_MACRO, c.METRIC_LOG_LOSS)


def fixture_run(store: MetadataStore) -> str:
    csv = b"x,label\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(100))
    import hashlib

    content = StoredContent(hashlib.sha256(csv).hexdigest(), len(csv), inline_data=csv)
    columns = [
        {"name": "x", "index": 0, "inferredType": "COLUMN_TYPE_NUMERIC", "distinctCount": "100"},
        {"name": "label", "index": 1, "inferredType": "COLUMN_TYPE_NUMERIC", "distinctCount": "2"},
    ]
    dataset, _ = store.create_dataset(
        "bench", display_name="bench", description="", csv_options={}, content=content, row_count=100, columns=columns
    )
    experiment = store.create_experiment(
        "bench", experiment_id="", dataset_id=dataset.id, display_name="", description="", target_column="label",
        task=c.TASK_CLASSIFICATION, primary_metric=0, cv_folds=5, holdout_fraction=0.2, seed=0,
        allowed_model_families=[], excluded_columns=[], default_stop_conditions={},
    )  # fmt: skip
    return store.create_run("bench", experiment.id, {"maxModels": 10**6}, 1).id


def results(rng: np.random.Generator, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        score = float(rng.random())
        folds = [
            {
                "foldNb": k,
                "values": {"test_accuracy": score, "train_accuracy": score, "fit_time": 0.1, "n_test_samples": 20},
            }
            for k in range(5)
        ]
        out.append(
            {
                "outcome": run_pb2.ModelResult.OUTCOME_SUCCEEDED,
                "model_family": "RandomForestClassifier",
                "model_json": '["RandomForestClassifier", {"n_estimators": 100}]',
                "pipeline_steps": ["NumImputer", "RandomForestClassifier"],
                "folds": folds,
                "metrics": [{"metric": m, "mean": float(rng.random()), "std": 0.01} for m in METRICS],
                "primary_score": score,
                "folds_run": 5,
            }
        )
    return out


def timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def bench(name: str, url: str, n: int) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    store = MetadataStore(engine)
    run_id = fixture_run(store)
    rng = np.random.default_rng(0)
    batches = [results(rng, 1000) for _ in range(n // 1000)]
    started = time.perf_counter()
    for batch in batches:
        store.create_results("bench", run_id, batch)
    insert_s = time.perf_counter() - started
    rows = n * (1 + len(METRICS))  # result rows + metric rows (folds are stored in the result row)

    def count() -> None:
        with engine.connect() as connection:
            connection.scalar(
                select(func.count()).select_from(schema.ModelResult).where(schema.ModelResult.run_id == run_id)
            )

    first = store.leaderboard("bench", run_id, 0, 50, "")[0]
    deep_token = first.next_page_token
    for _ in range(20):  # walk to page 21 for a deep-page measurement
        deep_token = store.leaderboard("bench", run_id, 0, 50, deep_token)[0].next_page_token
    for label in (name, f"{name}+stats"):
        base_median, _ = timed(count, 30)
        top_median, top_p95 = timed(lambda: store.leaderboard("bench", run_id, 0, 50, ""), 30)
        deep_median, _ = timed(lambda: store.leaderboard("bench", run_id, 0, 50, deep_token), 30)
        print(
            f"{label:<16} {n:>7} {n / insert_s:>10.0f} {rows / insert_s:>8.0f} {base_median:>11.1f} "
            f"{top_median:>9.1f} {top_p95:>9.1f} {deep_median:>10.1f} {top_median / base_median:>9.1f}",
            flush=True,
        )
        # Right after a bulk insert the planner has no statistics yet; the server's
        # autovacuum gathers them within a minute. Measure that steady state too.
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=int, default=10_000)
    args = parser.parse_args()
    print(
        f"{'backend':<16} {'results':>7} {'results/s':>10} {'rows/s':>8} {'count(*) ms':>11} "
        f"{'page1 p50':>9} {'page1 p95':>9} {'page21 p50':>10} {'p50/count':>9}"
    )
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        bench("sqlite", f"sqlite:///{tmp}/bench.db", args.results)
        bindir = postgres_bindir()
        if bindir is None:
            print("postgresql  skipped: no server binaries (scripts/install-system-deps.sh)")
            return
        server = PostgresServer(bindir).start()
        try:
            bench("postgresql", server.url(server.create_database()), args.results)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
