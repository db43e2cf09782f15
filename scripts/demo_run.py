"""The AutoML run of `make demo`: a real search on scikit-learn's breast
cancer table (written to CSV at run time), made through the public gateway
as any client would make it: upload, experiment, StartRun, WatchRun live to
the end, then the leaderboard.

With AUTOML_AUTH=api_key, set AUTOML_API_KEY to a key of the gateway.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator

import grpc
from google.protobuf import duration_pb2

from automl.common.settings import Settings
from automl.v1 import (
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    run_pb2,
)

BUDGET_SECONDS = 30


def breast_cancer_csv() -> bytes:
    from sklearn.datasets import load_breast_cancer

    out = io.StringIO()
    load_breast_cancer(as_frame=True).frame.to_csv(out, index=False)
    return out.getvalue().encode()


def demo(settings: Settings, out: object = sys.stdout) -> int:
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)  # type: ignore[call-overload]

    api = automl_service_pb2_grpc.AutoMLStub(grpc.insecure_channel(f"127.0.0.1:{settings.gateway_port}"))
    key = os.environ.get("AUTOML_API_KEY", "")
    metadata = [("authorization", f"Bearer {key}")] if key else []

    data = breast_cancer_csv()

    def upload() -> Iterator[dataset_pb2.UploadDatasetRequest]:
        yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name="breast cancer"))
        yield dataset_pb2.UploadDatasetRequest(chunk=data)

    dataset = api.UploadDataset(upload(), metadata=metadata, timeout=60)
    say(
        f"uploaded {dataset.name}: {dataset.row_count} rows, {len(dataset.columns)} columns, {dataset.size_bytes} bytes"
    )
    experiment = api.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(
                display_name="demo", dataset=dataset.name, target_column="target", seed=0
            )
        ),
        metadata=metadata,
        timeout=30,
    )
    say(
        f"created {experiment.name}: {common_pb2.Task.Name(experiment.resolved_task)}, "
        f"ranked by {common_pb2.Metric.Name(experiment.primary_metric)}"
    )
    run = api.StartRun(
        run_pb2.StartRunRequest(
            experiment=experiment.name,
            stop_conditions=common_pb2.StopConditions(max_duration=duration_pb2.Duration(seconds=BUDGET_SECONDS)),
        ),
        metadata=metadata,
        timeout=120,
    )
    say(
        f"started {run.name}: {BUDGET_SECONDS} s, {experiment.cv_folds or 5}-fold cross-validation in worker "
        "processes; a portfolio of strong defaults first, then aikit's search, a greedy ensemble at the end"
    )
    say()
    stream = api.WatchRun(event_pb2.WatchRunRequest(name=run.name, after_sequence=0), metadata=metadata, timeout=600)
    for message in stream:
        for event in message.batch.events:
            show(event, say)
    board = api.GetLeaderboard(run_pb2.GetLeaderboardRequest(run=run.name, page_size=5), metadata=metadata, timeout=30)
    say()
    say(f"leaderboard of {run.name} (mean ± spread over folds):")
    for entry in board.entries:
        result = entry.model_result
        score = next(m for m in result.metrics if m.metric == board.metric)
        if result.ensemble_members:
            made_of = "ensemble of " + ", ".join(f"#{m.index} x{m.weight:.2f}" for m in result.ensemble_members)
        else:
            made_of = " > ".join(result.pipeline_steps)
        say(
            f"  {entry.rank:>2}. {result.model_family:<26} {score.mean:.4f} ± {score.std:.4f}  "
            f"fit {result.fit_time_seconds:.2f} s  {made_of}"
        )
    run_id = run.name.split("/", 1)[1]
    say()
    say(f"see it in the dashboard: http://127.0.0.1:{settings.http_port}/ui/#/runs/{run_id}")
    say(f"or from the command line: .venv/bin/automl --gateway 127.0.0.1:{settings.gateway_port} leaderboard {run_id}")
    final = api.GetRun(run_pb2.GetRunRequest(name=run.name), metadata=metadata, timeout=30)
    return 0 if final.state == common_pb2.RUN_STATE_SUCCEEDED else 1


def show(event: event_pb2.Event, say: object) -> None:
    kind = event.WhichOneof("payload")
    payload = getattr(event, kind)
    if kind == "model_evaluated":
        best = "  new best" if payload.is_new_best else ""
        line = f"  model {payload.index:>2}  {payload.model_family:<26} {payload.primary_score:.4f}{best}"
    elif kind == "model_failed":
        outcome = run_pb2.ModelResult.Outcome.Name(payload.outcome)
        if payload.outcome == run_pb2.ModelResult.OUTCOME_INTERRUPTED:
            return  # stopped by the end of the budget, as asked: not news
        line = f"  model {payload.index:>2}  {payload.model_family:<26} {outcome}: {payload.error_message[:60]}"
    elif kind == "run_finished":
        state, reason = common_pb2.RunState.Name(payload.state), common_pb2.StopReason.Name(payload.stop_reason)
        seconds = payload.duration.ToTimedelta().total_seconds()
        line = f"run finished: {state} ({reason}), {payload.models_evaluated} models in {seconds:.1f} s"
        if payload.models_stopped:
            line += f" ({payload.models_stopped} stopped at the budget)"
        if payload.HasField("best_score"):
            line += f", best {payload.best_score:.4f}"
    elif kind == "run_note":
        line = f"  note: {payload.message}"
    elif kind == "run_started":
        line = (
            f"runner {payload.runner_id}: {payload.search_rows} search rows, {payload.holdout_rows} kept for the test"
        )
    else:
        return
    say(line)  # type: ignore[operator]
