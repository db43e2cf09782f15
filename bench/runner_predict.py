"""Predict throughput through the runner service against the bare pipeline.

Starts storage, notifier, runner and the public gateway (API keys on) as
real processes, trains the best of a short search on a generated mixed-type
table (numbers, a category, free text, missing values) for one tenant, then
predicts 1, 1,000 and 100,000 rows per call:

    .venv/bin/python bench/runner_predict.py [--rows 1 1000 100000] [--repeat 5] [--profile SECONDS]

(a) through the service: a Predict call to the runner with the rows as CSV
(parsing, type checks, the rows to the model's worker process and its
answers back, probabilities, the answer over gRPC); (b) the baseline, in
this process: the same model file loaded with joblib, `predict` and
`predict_proba` of the fitted pipeline on the same rows already in a typed
DataFrame. The figure is rows/s of (a) over rows/s of (b); goal >= 0.5 for
100,000 rows.

One row per call (an application scoring one customer at a time) is also
measured as records (one Struct) and through the public gateway (its
Predict forwards to the runner), as CSV and as records; goal >= 0.8 of the
bare pipeline through the gateway. The calls of a row count are
interleaved (service, bare, service, bare...), so a neighbour's load falls
on both.

--profile SECONDS: after the figures, py-spy records the gateway, the
runner and its model's worker while one-row Predict calls go through the
gateway; the collapsed stacks (py-spy's raw format, for flamegraph.pl or
speedscope) are written to var/profile-*.txt.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402
import pandas as pd  # noqa: E402

from automl.common import context  # noqa: E402
from automl.v1 import model_pb2, run_pb2, runner_service_pb2, storage_service_pb2  # noqa: E402
from services.runner import aikit_compat, predicting, signing  # noqa: E402
from tests.gateway.conftest import Client, admin  # noqa: E402
from tests.runner.conftest import mixed_table, start_stack, stop_stack, to_csv  # noqa: E402

TENANT = "bench"


def middle(times: list[float]) -> float:
    return statistics.median(times)


def records(frame: pd.DataFrame) -> model_pb2.PredictRecords:
    """The rows as Structs, missing values as null (what a JSON client sends)."""
    out = model_pb2.PredictRecords()
    for row in frame.astype(object).where(frame.notna(), None).to_dict(orient="records"):
        out.rows.add().update(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 1000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", type=float, default=0, help="seconds of py-spy on the runner (0: none)")
    args = parser.parse_args()
    aikit_compat.load()
    table = mixed_table(5000, seed=3)
    tenant = [(context.TENANT_KEY, TENANT)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "suite"
        folder.mkdir()
        s = start_stack(folder, {"AUTOML_MAX_MESSAGE_BYTES": str(64 * 2**20), "AUTOML_AUTH": "api_key"})
        try:
            s.start("gateway")
            key = admin(s.env, "keys", "create", "--tenant", TENANT, "--name", "bench")["key"]  # type: ignore[index]
            client = Client(s.target("gateway"), key)
            experiment = client.experiment(
                to_csv(table), "label", allowed_model_families=["RandomForestClassifier"], cv_folds=3
            )
            end = client.wait_end(client.start(experiment, workers=2, max_models=2))
            model = client.train(end.best_model_result)
            path = Path(tmp) / "model.joblib"
            chunks = s.storage.ReadArtifact(
                storage_service_pb2.ReadArtifactRequest(name=model.artifact), metadata=tenant
            )
            path.write_bytes(b"".join(m.chunk for m in chunks if m.WhichOneof("content") == "chunk"))
            key_bytes = (Path(s.env["AUTOML_DATA_DIR"]) / signing.KEY_FILE).read_bytes().strip()
            with signing.open_sealed(path, key_bytes) as stream:  # the runner's seal, checked as the runner does
                loaded = predicting.Loaded.of(joblib.load(stream))
            result = client.call("GetModelResult", run_pb2.GetModelResultRequest(name=end.best_model_result))
            print(f"model: {' > '.join(result.pipeline_steps)}, {model.artifact_size_bytes / 2**20:.1f} MiB file")
            features = table.drop(columns=["label"])
            runner = s.runner

            def direct(request: model_pb2.PredictRequest) -> model_pb2.PredictResponse:
                return runner.Predict(request, metadata=tenant, timeout=600)

            def public(request: model_pb2.PredictRequest) -> model_pb2.PredictResponse:
                return client.call("Predict", request, timeout=600)  # type: ignore[return-value]

            for rows in args.rows:
                frame = pd.concat([features] * (rows // len(features) + 1), ignore_index=True).iloc[:rows]
                X = predicting.features(frame, loaded, "bench")
                as_csv = model_pb2.PredictRequest(name=model.name, csv=to_csv(frame))
                cases = [("", direct, as_csv)]
                if rows == 1:
                    as_records = model_pb2.PredictRequest(name=model.name, records=records(frame))
                    cases += [
                        (" (records)", direct, as_records),
                        (" (gateway)", public, as_csv),
                        (" (gateway, records)", public, as_records),
                    ]
                calls = args.repeat if rows >= 1000 else args.repeat * 40
                for _, call, request in cases:  # warm: the model's worker, channels
                    assert len(call(request).predictions) == rows
                served: dict[str, list[float]] = {label: [] for label, _, _ in cases}
                bare: list[float] = []
                for _ in range(calls):
                    for label, call, request in cases:
                        started = time.perf_counter()
                        call(request)
                        served[label].append(time.perf_counter() - started)
                        started = time.perf_counter()
                        loaded.model.predict(X)
                        loaded.model.predict_proba(X)
                        bare.append(time.perf_counter() - started)
                b = rows / middle(bare)
                for label, *_ in cases:
                    a = rows / middle(served[label])
                    print(
                        f"{rows:>7} rows/call{label}: service {a:>10,.0f} rows/s, bare {b:>10,.0f} rows/s, "
                        f"ratio {a / b:.2f}"
                        + (
                            f" ({middle(served[label]) * 1000:.1f} ms against {middle(bare) * 1000:.1f})"
                            if rows == 1
                            else ""
                        )
                    )
                if rows == 1:  # what any call costs: the runner's cheapest RPC, in the same client
                    status = runner_service_pb2.GetRunnerStatusRequest()
                    floor = []
                    for _ in range(calls):
                        started = time.perf_counter()
                        runner.GetRunnerStatus(status, metadata=tenant, timeout=60)
                        floor.append(time.perf_counter() - started)
                    print(f"        (a GetRunnerStatus call to the runner: {middle(floor) * 1000:.1f} ms)")
            if args.profile:
                profile(s, public, model_pb2.PredictRequest(name=model.name, csv=to_csv(features.iloc[:1])), args)
        finally:
            stop_stack(s)


def profile(s, call, request: model_pb2.PredictRequest, args: argparse.Namespace) -> None:
    """py-spy on the gateway, the runner and its serving worker while one-row calls go on."""
    runner = s.procs["runner"].pid
    children = subprocess.run(["pgrep", "-P", str(runner)], capture_output=True, text=True).stdout.split()
    pids = {"gateway": s.procs["gateway"].pid, "runner": runner}
    (ROOT / "var").mkdir(exist_ok=True)
    for pid in children:  # the fork server; its children are workers
        for worker in subprocess.run(["pgrep", "-P", pid], capture_output=True, text=True).stdout.split():
            pids[f"worker-{worker}"] = int(worker)
    spy = str(Path(sys.executable).parent / "py-spy")
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            call(request)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        recorders = [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(int(args.profile)),
                    "-r",
                    "500",
                    "--nonblocking",
                    "-f",
                    "raw",
                    "-o",
                    str(ROOT / "var" / f"profile-{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        ]
        for recorder in recorders:
            recorder.wait()
    finally:
        stop.set()
        thread.join()
    print("profiles (collapsed stacks):", ", ".join(f"var/profile-{name}.txt" for name in pids))


if __name__ == "__main__":
    main()
