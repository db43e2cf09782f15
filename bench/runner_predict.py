"""Predict throughput through the runner service against the bare pipeline.

Starts storage, notifier and runner as real processes, trains the best of a
short search on a generated mixed-type table (numbers, a category, free text,
missing values), then predicts 1, 1,000 and 100,000 rows per call:

    .venv/bin/python bench/runner_predict.py [--rows 1 1000 100000] [--repeat 5]

(a) through the service: a Predict call with the rows as CSV (parsing, type
checks, the rows to the model's worker process and its answers back,
probabilities, the answer over gRPC); (b) the baseline, in this
process: the same model file loaded with joblib, `predict` and
`predict_proba` of the fitted pipeline on the same rows already in a typed
DataFrame. The figure is rows/s of (a) over rows/s of (b); goal >= 0.5 for
100,000 rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402
import pandas as pd  # noqa: E402

from automl.v1 import model_pb2, run_pb2, runner_service_pb2, storage_service_pb2  # noqa: E402
from services.runner import aikit_compat, predicting, signing  # noqa: E402
from tests.runner.conftest import mixed_table, start_stack, stop_stack, to_csv  # noqa: E402


def best(times: list[float]) -> float:
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 1000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    aikit_compat.load()
    table = mixed_table(5000, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "suite"
        folder.mkdir()
        s = start_stack(folder, {"AUTOML_MAX_MESSAGE_BYTES": str(64 * 2**20)})
        try:
            experiment = s.experiment(to_csv(table), "label", allowed_model_families=["RandomForestClassifier"])
            run = s.new_run(experiment, workers=2, max_models=2)
            s.execute(run)
            end = s.wait_end(run)
            model = s.storage.CreateTrainedModel(
                storage_service_pb2.CreateTrainedModelRequest(
                    trained_model=model_pb2.TrainedModel(model_result=end.best_model_result)
                ),
                timeout=30,
            )
            s.runner.ExecuteTraining(runner_service_pb2.ExecuteTrainingRequest(name=model.name), timeout=30)
            while (model := s.storage.GetTrainedModel(model_pb2.GetTrainedModelRequest(name=model.name))).state == 1:
                time.sleep(0.2)
            path = Path(tmp) / "model.joblib"
            chunks = s.storage.ReadArtifact(storage_service_pb2.ReadArtifactRequest(name=model.artifact))
            path.write_bytes(b"".join(m.chunk for m in chunks if m.WhichOneof("content") == "chunk"))
            key = (Path(s.env["AUTOML_DATA_DIR"]) / signing.KEY_FILE).read_bytes().strip()
            with signing.open_sealed(path, key) as stream:  # the runner's seal, checked as the runner does
                loaded = predicting.Loaded.of(joblib.load(stream))
            result = s.storage.GetModelResult(run_pb2.GetModelResultRequest(name=end.best_model_result))
            print(f"model: {' > '.join(result.pipeline_steps)}, {model.artifact_size_bytes / 2**20:.1f} MiB file")
            features = table.drop(columns=["label"])
            for rows in args.rows:
                frame = pd.concat([features] * (rows // len(features) + 1), ignore_index=True).iloc[:rows]
                data = to_csv(frame)
                X = predicting.features(frame, loaded, "bench")
                calls = args.repeat if rows >= 1000 else args.repeat * 40
                served, bare = [], []
                for _ in range(calls):
                    started = time.perf_counter()
                    answer = s.runner.Predict(model_pb2.PredictRequest(name=model.name, csv=data), timeout=600)
                    served.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    loaded.model.predict(X)
                    loaded.model.predict_proba(X)
                    bare.append(time.perf_counter() - started)
                assert len(answer.predictions) == rows
                a, b = rows / best(served), rows / best(bare)
                print(f"{rows:>7} rows/call: service {a:>10,.0f} rows/s, bare {b:>10,.0f} rows/s, ratio {a / b:.2f}")
        finally:
            stop_stack(s)


if __name__ == "__main__":
    main()
