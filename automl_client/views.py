"""What the `automl` command shows people: tables of resources, and the live
view of a run (progress against its budget, models done, best score, a
leaderboard that updates as models finish)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from automl.common import metrics
from automl.v1 import common_pb2, dataset_pb2, event_pb2, experiment_pb2, model_pb2, run_pb2


def enum_name(enum: Any, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).lower()


def when(ts: Any) -> str:
    if not ts.seconds:
        return ""
    return ts.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short(name: str) -> str:
    """ "runs/abc" -> "abc": tables show ids, which every command accepts."""
    return name.split("/", 1)[-1]


def seconds_text(value: float) -> str:
    value = int(max(0, value))
    return f"{value // 3600}:{value % 3600 // 60:02d}:{value % 60:02d}"


def table(title: str, columns: list[str], rows: Iterable[list[Any]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    return out


def datasets_table(datasets: Iterable[dataset_pb2.Dataset]) -> Table:
    return table(
        "datasets",
        ["id", "display name", "rows", "columns", "bytes", "created"],
        (
            [short(d.name), d.display_name, d.row_count, len(d.columns), d.size_bytes, when(d.create_time)]
            for d in datasets
        ),
    )


def columns_table(columns: Iterable[dataset_pb2.ColumnProfile]) -> Table:
    return table(
        "columns",
        ["#", "name", "type", "missing", "distinct", "min", "max", "top values"],
        (
            [
                c.index,
                c.name,
                enum_name(common_pb2.ColumnType, c.inferred_type, "COLUMN_TYPE_"),
                c.missing_count,
                f"{c.distinct_count}{'~' if c.distinct_is_estimate else ''}",
                f"{c.min:g}" if c.HasField("min") else "",
                f"{c.max:g}" if c.HasField("max") else "",
                ", ".join(c.top_values),
            ]
            for c in columns
        ),
    )


def experiments_table(experiments: Iterable[experiment_pb2.Experiment]) -> Table:
    return table(
        "experiments",
        ["id", "display name", "dataset", "target", "task", "metric", "runs"],
        (
            [
                short(e.name),
                e.display_name,
                short(e.dataset),
                e.target_column,
                enum_name(common_pb2.Task, e.resolved_task, "TASK_"),
                enum_name(common_pb2.Metric, e.primary_metric, "METRIC_"),
                e.run_count,
            ]
            for e in experiments
        ),
    )


def runs_table(runs: Iterable[run_pb2.Run]) -> Table:
    return table(
        "runs",
        ["id", "experiment", "state", "stop reason", "models", "failed", "best", "created"],
        (
            [
                short(r.name),
                short(r.experiment),
                enum_name(common_pb2.RunState, r.state, "RUN_STATE_"),
                enum_name(common_pb2.StopReason, r.stop_reason, "STOP_REASON_") if r.stop_reason else "",
                r.models_evaluated,
                r.models_failed,
                f"{r.best_score:.4f}" if r.HasField("best_score") else "",
                when(r.create_time),
            ]
            for r in runs
        ),
    )


def metric_of(result: run_pb2.ModelResult, metric: int) -> common_pb2.MetricSummary | None:
    return next((m for m in result.metrics if m.metric == metric), None)


def leaderboard_table(board: run_pb2.GetLeaderboardResponse, title: str = "leaderboard") -> Table:
    name = enum_name(common_pb2.Metric, board.metric, "METRIC_")
    rows = []
    for entry in board.entries:
        result = entry.model_result
        score = metric_of(result, board.metric)
        rows.append(
            [
                entry.rank,
                result.model_family,
                f"{score.mean:.4f} ± {score.std:.4f}" if score else "",
                result.folds_run,
                f"{result.fit_time_seconds:.2f}",
                " > ".join(result.pipeline_steps),
                short(result.name),
            ]
        )
    return table(f"{title} ({name})", ["#", "family", name, "folds", "fit s", "pipeline", "result id"], rows)


def models_table(models: Iterable[model_pb2.TrainedModel]) -> Table:
    return table(
        "trained models",
        ["id", "result id", "state", "rows", "fit s", "created"],
        (
            [
                short(m.name),
                short(m.model_result),
                enum_name(model_pb2.TrainedModel.State, m.state, "STATE_"),
                m.training_rows,
                f"{m.fit_time_seconds:.2f}",
                when(m.create_time),
            ]
            for m in models
        ),
    )


def evaluation_view(evaluation: model_pb2.HoldoutEvaluation) -> Group:
    metrics = table(
        f"holdout ({evaluation.row_count} rows)",
        ["metric", "value"],
        ([enum_name(common_pb2.Metric, m.metric, "METRIC_"), f"{m.value:.4f}"] for m in evaluation.metrics),
    )
    parts: list[Any] = [metrics]
    matrix = evaluation.confusion_matrix
    if matrix.labels:
        labels = list(matrix.labels)
        parts.append(
            table(
                "confusion matrix (rows: true, columns: predicted)",
                ["", *labels],
                ([label, *row.counts] for label, row in zip(labels, matrix.rows, strict=True)),
            )
        )
    return Group(*parts)


@dataclass
class RunView:
    """The state of a watched run, fed with WatchRun messages."""

    run: run_pb2.Run = field(default_factory=run_pb2.Run)
    elapsed_at_snapshot: float = 0.0
    snapshot_clock: float = field(default_factory=time.monotonic)
    models: dict[int, event_pb2.ModelEvaluated] = field(default_factory=dict)
    failed: int = 0
    best: float | None = None
    finished: event_pb2.RunFinished | None = None
    last_sequence: int = 0

    def feed(self, message: event_pb2.WatchRunResponse) -> None:
        kind = message.WhichOneof("content")
        if kind == "snapshot":
            self.run = message.snapshot.run
            self.elapsed_at_snapshot = message.snapshot.elapsed.ToTimedelta().total_seconds()
            self.snapshot_clock = time.monotonic()
            self.failed = self.run.models_failed
            if self.run.HasField("best_score"):
                self.best = self.run.best_score
        elif kind == "batch":
            for event in message.batch.events:
                self.event(event)

    def event(self, event: event_pb2.Event) -> None:
        self.last_sequence = event.sequence
        kind = event.WhichOneof("payload")
        if kind == "model_evaluated":
            evaluated = event.model_evaluated
            self.models[evaluated.index] = evaluated
            self.best = evaluated.best_score
        elif kind == "model_failed":
            self.failed = event.model_failed.models_failed
        elif kind == "run_state_changed":
            self.run.state = event.run_state_changed.state
        elif kind == "run_finished":
            self.finished = event.run_finished
            self.run.state = event.run_finished.state
            self.run.stop_reason = event.run_finished.stop_reason

    @property
    def elapsed(self) -> float:
        if self.finished is not None:
            return self.finished.duration.ToTimedelta().total_seconds()
        if self.run.state in (common_pb2.RUN_STATE_PENDING,):
            return 0.0
        return self.elapsed_at_snapshot + time.monotonic() - self.snapshot_clock

    def render(self) -> Group:
        run, conditions = self.run, self.run.stop_conditions
        budget = conditions.max_duration.ToTimedelta().total_seconds()
        done = max(len(self.models) + self.failed, run.models_evaluated + run.models_failed)
        state = enum_name(common_pb2.RunState, run.state, "RUN_STATE_")
        head = Text.assemble((run.name, "bold"), "  ", (state, "cyan"))
        if self.finished is not None:
            head.append(f"  ({enum_name(common_pb2.StopReason, self.finished.stop_reason, 'STOP_REASON_')})")
        parts: list[Any] = [head]
        if budget:
            parts.append(ProgressBar(total=budget, completed=min(self.elapsed, budget), width=50))
            parts.append(Text(f"time {seconds_text(self.elapsed)} of {seconds_text(budget)}"))
        if conditions.max_models:
            parts.append(ProgressBar(total=conditions.max_models, completed=min(done, conditions.max_models), width=50))
        limit = f" of {conditions.max_models}" if conditions.max_models else ""
        best = f"{self.best:.4f}" if self.best is not None else "-"
        target = f" (target {conditions.target_score:g})" if conditions.HasField("target_score") else ""
        metric = enum_name(common_pb2.Metric, run.primary_metric, "METRIC_")
        parts.append(Text(f"models {done}{limit}, failed {self.failed}, best {metric} {best}{target}"))
        top = sorted(
            self.models.values(), key=lambda m: m.primary_score, reverse=metrics.higher_is_better(run.primary_metric)
        )
        parts.append(
            table(
                "best models so far",
                ["#", "family", metric, "fit s", "model"],
                (
                    [i + 1, m.model_family, f"{m.primary_score:.4f}", f"{m.fit_time_seconds:.2f}", m.index]
                    for i, m in enumerate(top[:10])
                ),
            )
        )
        if self.finished is not None and self.finished.message:
            parts.append(Text(self.finished.message))
        return Group(*parts)
