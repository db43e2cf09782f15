"""What the `automl` command shows people: tables of resources, and the live
view of a run (progress against its budget, models done, best score, a
leaderboard that updates as models finish)."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.progress_bar import ProgressBar
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from automl.common import metrics
from automl.v1 import common_pb2, dataset_pb2, event_pb2, experiment_pb2, model_pb2, run_pb2


def enum_name(enum: EnumTypeWrapper, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).lower()


def when(ts: timestamp_pb2.Timestamp) -> str:
    if not ts.seconds:
        return ""
    return ts.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short(name: str) -> str:
    """ "runs/abc" -> "abc": tables show ids, which every command accepts."""
    return name.split("/", 1)[-1]


def seconds_text(value: float) -> str:
    value = int(max(0, value))
    return f"{value // 3600}:{value % 3600 // 60:02d}:{value % 60:02d}"


@dataclass(frozen=True)
class Col:
    """A column of a table that fits the terminal. `kind`: "id" is never cut
    nor wrapped (ids are copied from tables); "text" (names, messages,
    pipelines) is shortened with an ellipsis when the table is too wide, down
    to `least` characters (default TEXT_MIN); "fixed" (numbers, states, times)
    is shown whole or not at all. `drop`: 0 always shown; otherwise the column
    may be left out when the table does not fit even shortened, 1 first (the
    least useful)."""

    header: str
    kind: str = "fixed"
    drop: int = 0
    least: int = 0

    @property
    def header_wraps(self) -> bool:
        """Long headers wrap between words ("stop reason" on two lines), but
        not around a word of one or two letters ("fit s")."""
        words = self.header.split()
        return len(words) > 1 and all(len(w) > 2 for w in words)

    @property
    def header_width(self) -> int:
        """The narrowest the header gets."""
        if self.header_wraps:
            return max(cell_len(w) for w in self.header.split())
        return cell_len(self.header)


TEXT_MIN = 8
"""The narrowest a shortened text column gets by default (7 characters and "…")."""
NAME_MIN = 20
"""The narrowest a display name gets: less useful columns are left out first."""


def text_col(header: str, drop: int = 0, least: int = 0) -> Col:
    return Col(header, "text", drop, least)


def id_col(header: str = "id", drop: int = 0) -> Col:
    return Col(header, "id", drop)


HEXISH = re.compile(r"(?=[0-9a-f]*[0-9])[0-9a-f]{6,}")
"""What looks like an id in a text ("Type from datasets/c3370f0b7e5d2a11")."""


def shorten(text: str, width: int) -> str:
    """`text` in `width` cells, cut with "…" when longer; never inside what
    looks like an id: the cut is then before it."""
    if cell_len(text) <= width:
        return text
    keep = used = 0
    for char in text:
        used += cell_len(char)
        if used > width - 1:
            break
        keep += 1
    for match in HEXISH.finditer(text):
        if match.start() < keep < match.end():
            keep = match.start()
    return text[:keep] + "…"


class FitTable:
    """A table laid out for the width it is drawn in: it keeps its natural
    width when that fits; otherwise headers wrap between words, then text
    columns are shortened with an ellipsis, then the least useful columns are
    left out (a caption names them). Ids are always whole, on one line: when
    they alone do not fit, the table is wider than asked rather than cut."""

    def __init__(self, title: str, columns: Sequence[Col | str], rows: Iterable[list[Any]]) -> None:
        self.title = title
        self.columns = [c if isinstance(c, Col) else text_col(c) for c in columns]
        self.rows = [["" if v is None else str(v) for v in row] for row in rows]

    @staticmethod
    def _overhead(count: int) -> int:
        """Borders and padding: "│ a │ b │" is 3 a column and 1."""
        return 3 * count + 1

    @cached_property
    def _limits(self) -> tuple[list[int], list[int], list[int]]:
        """Per column: its natural width, its width with the header wrapped
        (every value whole), and the narrowest it may get."""
        natural, whole, least = [], [], []
        for i, column in enumerate(self.columns):
            longest = max((cell_len(row[i]) for row in self.rows if i < len(row)), default=0)
            natural.append(max(longest, cell_len(column.header), 1))
            whole.append(max(longest, column.header_width, 1))
            floor = max(column.least or TEXT_MIN, column.header_width) if column.kind == "text" else whole[-1]
            least.append(min(whole[-1], floor))
        return natural, whole, least

    def _fit(self, shown: list[int], width: int) -> tuple[dict[int, int], int]:
        """The widths of the columns `shown` in `width` characters, and by how
        much they still do not fit (<= 0: they do)."""
        natural, whole, least = self._limits
        widths = {i: natural[i] for i in shown}
        excess = sum(widths.values()) + self._overhead(len(shown)) - width
        for floor in (whole, least):  # wrap headers first, then shorten text
            while excess > 0:
                candidates = [i for i in shown if widths[i] > floor[i]]
                if not candidates:
                    break
                widest = max(candidates, key=lambda i: (widths[i], -i))
                widths[widest] -= 1
                excess -= 1
        return widths, excess

    def plan(self, width: int) -> tuple[list[int], list[int]]:
        """The columns shown (indexes, in order) and their widths (without
        padding) for `width` characters: the least useful columns are left
        out until the rest fit, then any of them that fits after all is put
        back, the most useful first. Columns with nothing in them go first."""
        shown = list(range(len(self.columns)))
        empty = [all(not row[i] for row in self.rows if i < len(row)) for i in shown]
        order = [i for *_, i in sorted((not empty[i], c.drop, i) for i, c in enumerate(self.columns) if c.drop)]
        dropped = []
        while self._fit(shown, width)[1] > 0 and order:
            dropped.append(order.pop(0))
            shown.remove(dropped[-1])
        for i in reversed(dropped):
            trial = sorted([*shown, i])
            if self._fit(trial, width)[1] <= 0:
                shown = trial
        widths = self._fit(shown, width)[0]
        return shown, [widths[i] for i in shown]

    def build(self, width: int) -> tuple[Table, int]:
        """The rich table for `width` characters, and how wide it is (wider
        than `width` only when the ids alone do not fit)."""
        shown, widths = self.plan(width)
        hidden = [self.columns[i].header or "#" for i in range(len(self.columns)) if i not in shown]
        caption = None
        if hidden:
            names = ", ".join(hidden) if len(hidden) <= 4 else f"{len(hidden)} columns"
            caption = f"not shown at this width: {names}"
        out = Table(
            title=self.title, title_justify="left", header_style="bold", caption=caption, caption_justify="left"
        )
        for i, w in zip(shown, widths, strict=True):
            column = self.columns[i]
            out.add_column(
                Text(column.header, overflow="fold", no_wrap=not column.header_wraps),
                width=w,
                no_wrap=True,
                overflow="ignore" if column.kind == "id" else "ellipsis",
            )
        for row in self.rows:
            cells = [row[i] if i < len(row) else "" for i in shown]
            out.add_row(
                *(
                    Text(shorten(cell, w) if self.columns[i].kind == "text" else cell)
                    for i, w, cell in zip(shown, widths, cells, strict=True)
                )
            )
        return out, sum(widths) + self._overhead(len(shown))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table, needed = self.build(options.max_width)
        yield from console.render(table, options.update_width(max(options.max_width, needed)))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        _, needed = self.build(options.max_width)
        return Measurement(needed, needed)


def table(title: str, columns: Sequence[Col | str], rows: Iterable[list[Any]]) -> FitTable:
    return FitTable(title, columns, rows)


def datasets_table(datasets: Iterable[dataset_pb2.Dataset]) -> FitTable:
    return table(
        "datasets",
        [
            id_col(),
            text_col("display name", least=NAME_MIN),
            Col("rows"),
            Col("columns", drop=2),
            Col("bytes", drop=1),
            Col("created", drop=3),
        ],
        (
            [short(d.name), d.display_name, d.row_count, len(d.columns), d.size_bytes, when(d.create_time)]
            for d in datasets
        ),
    )


def preview_table(title: str, names: list[str], rows: Iterable[list[Any]]) -> FitTable:
    """A dataset's first rows: every value shortened alike when too wide, then
    the last columns left out (the first is always shown)."""
    return table(title, [text_col(name, drop=len(names) - i if i else 0) for i, name in enumerate(names)], rows)


def columns_table(columns: Iterable[dataset_pb2.ColumnProfile]) -> FitTable:
    return table(
        "columns",
        [
            Col("#"),
            text_col("name"),
            Col("type"),
            Col("missing", drop=5),
            Col("distinct", drop=3),
            Col("min", drop=2),
            Col("max", drop=1),
            text_col("top values", drop=4),
        ],
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


def experiments_table(experiments: Iterable[experiment_pb2.Experiment]) -> FitTable:
    return table(
        "experiments",
        [
            id_col(),
            text_col("display name", least=NAME_MIN),
            id_col("dataset", drop=4),
            text_col("target", drop=5),
            Col("task", drop=2),
            Col("metric", drop=3),
            Col("runs", drop=1),
        ],
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


def runs_table(runs: Iterable[run_pb2.Run]) -> FitTable:
    return table(
        "runs",
        [
            id_col(),
            id_col("experiment", drop=5),
            Col("state"),
            Col("stop reason", drop=3),
            Col("models", drop=6),
            Col("failed", drop=2),
            Col("stopped", drop=1),
            Col("best", drop=7),
            Col("created", drop=4),
        ],
        (
            [
                short(r.name),
                short(r.experiment),
                enum_name(common_pb2.RunState, r.state, "RUN_STATE_"),
                enum_name(common_pb2.StopReason, r.stop_reason, "STOP_REASON_") if r.stop_reason else "",
                r.models_evaluated,
                r.models_failed,
                r.models_stopped,
                f"{r.best_score:.4f}" if r.HasField("best_score") else "",
                when(r.create_time),
            ]
            for r in runs
        ),
    )


def counts_text(evaluated: int, failed: int, stopped: int) -> str:
    """ "12 evaluated, 1 failed, 2 stopped": stopped candidates (interrupted by a
    normal stop of the run) are not failures."""
    return f"{evaluated} evaluated, {failed} failed, {stopped} stopped"


def run_details(run: run_pb2.Run) -> Group:
    """Below a run's table: why it ended (a failed or cancelled run's reason
    stands out), its counts, and what the runner adapted to or fell back on."""
    lines: list[Any] = []
    if run.state == common_pb2.RUN_STATE_QUEUED:
        lines.append(Text(f"queued: position {run.queue_position} ({run.status_message})", style="yellow"))
    if run.takeovers:
        lines.append(Text(f"taken over: {run.takeovers} time(s) after its runner was lost"))
    failed = run.state in (common_pb2.RUN_STATE_FAILED, common_pb2.RUN_STATE_CANCELLED)
    if failed:
        state = enum_name(common_pb2.RunState, run.state, "RUN_STATE_")
        lines.append(Text.assemble((f"{state}: ", "bold red"), (run.status_message or "(no reason given)", "red")))
    if run.stop_reason:
        reason = enum_name(common_pb2.StopReason, run.stop_reason, "STOP_REASON_")
        detail = f" ({run.status_message})" if run.status_message and not failed else ""
        lines.append(Text(f"stop reason: {reason}{detail}"))
    lines.append(Text("models: " + counts_text(run.models_evaluated, run.models_failed, run.models_stopped)))
    if run.notes:
        lines.append(Text("notes:", style="bold"))
        lines += [Text(f"  - {note}") for note in run.notes]
    return Group(*lines)


def metric_of(result: run_pb2.ModelResult, metric: int) -> common_pb2.MetricSummary | None:
    return next((m for m in result.metrics if m.metric == metric), None)


# The runner's cross-validation folds when an experiment leaves cv_folds unset
# (services/runner/problem.py DEFAULT_FOLDS).
DEFAULT_FOLDS = 5


def folds_text(result: run_pb2.ModelResult, cv_folds: int = 0) -> str:
    """Folds run, as "3/5" when fewer than the experiment's cross-validation
    folds (a candidate stopped early, or raced on a few folds)."""
    planned = cv_folds or DEFAULT_FOLDS
    return f"{result.folds_run}/{planned}" if 0 < result.folds_run < planned else str(result.folds_run)


def weight_text(weight: float) -> str:
    return f"{weight:.2f}".rstrip("0").rstrip(".")


TIMES = "\u00d7"  # the multiplication sign of an ensemble weight


def ensemble_text(result: run_pb2.ModelResult) -> str:
    """An ensemble's members and weights, heaviest first ("ensemble of #3 x0.5,
    #7 x0.3, #1 x0.2", with a multiplication sign); "" for a single model."""
    members = sorted(result.ensemble_members, key=lambda m: (-m.weight, m.index))
    return "ensemble of " + ", ".join(f"#{m.index} {TIMES}{weight_text(m.weight)}" for m in members) if members else ""


def pipeline_text(result: run_pb2.ModelResult) -> str:
    return ensemble_text(result) or " > ".join(result.pipeline_steps)


def leaderboard_table(board: run_pb2.GetLeaderboardResponse, title: str = "leaderboard", cv_folds: int = 0) -> FitTable:
    """The ranked results. `cv_folds`: the experiment's (0: the default), to show
    "3/5" for a candidate that ran fewer folds. A "rows" column appears when
    some candidates were cross-validated on a sample of rows: their sample size
    (the most rows any entry shown used stands for the run's search rows)."""
    name = enum_name(common_pb2.Metric, board.metric, "METRIC_")
    sizes = [e.model_result.sample_rows for e in board.entries if e.model_result.sample_rows]
    full = max(sizes, default=0)
    sampled = any(size < full for size in sizes)
    rows = []
    for entry in board.entries:
        result = entry.model_result
        score = metric_of(result, board.metric)
        row = [
            entry.rank,
            result.model_family,
            f"{score.mean:.4f} ± {score.std:.4f}" if score else "",
            folds_text(result, cv_folds),
        ]
        if sampled:
            row.append(result.sample_rows if 0 < result.sample_rows < full else "")
        row += [f"{result.fit_time_seconds:.2f}", pipeline_text(result), short(result.name)]
        rows.append(row)
    columns = [
        Col("#"),
        text_col("family", drop=5, least=14),
        Col(name),
        Col("folds", drop=3),
        *([Col("rows", drop=2)] if sampled else []),
        Col("fit s", drop=1),
        text_col("pipeline", drop=4),
        id_col("result id"),
    ]
    return table(f"{title} ({name})", columns, rows)


def models_table(models: Iterable[model_pb2.TrainedModel]) -> FitTable:
    return table(
        "trained models",
        [
            id_col(),
            id_col("result id", drop=4),
            Col("state"),
            Col("rows", drop=2),
            Col("fit s", drop=1),
            Col("created", drop=3),
        ],
        (
            [
                short(m.name),
                short(m.model_result),
                enum_name(model_pb2.TrainedModel.State, m.state, "STATE_"),
                f"{m.training_rows} (holdout in)" if m.includes_holdout else m.training_rows,
                f"{m.fit_time_seconds:.2f}",
                when(m.create_time),
            ]
            for m in models
        ),
    )


def evaluation_view(evaluation: model_pb2.HoldoutEvaluation) -> Group:
    metrics = table(
        f"holdout ({evaluation.row_count} rows)",
        [Col("metric"), Col("value")],
        ([enum_name(common_pb2.Metric, m.metric, "METRIC_"), f"{m.value:.4f}"] for m in evaluation.metrics),
    )
    parts: list[Any] = [metrics]
    matrix = evaluation.confusion_matrix
    if matrix.labels:
        labels = list(matrix.labels)
        parts.append(
            table(
                "confusion matrix (rows: true, columns: predicted)",
                [text_col(""), *(Col(label, drop=len(labels) - i) for i, label in enumerate(labels))],
                ([label, *row.counts] for label, row in zip(labels, matrix.rows, strict=True)),
            )
        )
    return Group(*parts)


class Meter:
    """A progress bar (up to BAR_WIDTH) and what it measures, on one line;
    in a narrow terminal the bar gets shorter, then the label goes below it,
    rather than being cut."""

    def __init__(self, total: float, completed: float, label: str) -> None:
        self.total, self.completed, self.label = total, completed, label

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        room = options.max_width - cell_len(self.label) - 1
        if room >= BAR_MIN:
            yield ProgressBar(total=self.total, completed=self.completed, width=min(BAR_WIDTH, room))
            yield Text(" " + self.label)
        else:
            yield ProgressBar(total=self.total, completed=self.completed, width=min(BAR_WIDTH, options.max_width))
            yield Segment.line()
            yield Text(self.label)


BAR_WIDTH, BAR_MIN = 50, 10


@dataclass
class RunView:
    """The state of a watched run, fed with WatchRun messages."""

    run: run_pb2.Run = field(default_factory=run_pb2.Run)
    elapsed_at_snapshot: float = 0.0
    snapshot_clock: float = field(default_factory=time.monotonic)
    models: dict[int, event_pb2.ModelEvaluated] = field(default_factory=dict)
    failed: int = 0
    stopped: int = 0
    """Candidates interrupted by a normal stop of the run: not failures."""
    notes: list[str] = field(default_factory=list)
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
            self.stopped = self.run.models_stopped
            self.notes = list(self.run.notes)
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
            failed = event.model_failed
            if failed.outcome == run_pb2.ModelResult.OUTCOME_INTERRUPTED:
                self.stopped = max(self.stopped + 1, failed.models_stopped)
            else:
                self.failed = failed.models_failed
                self.stopped = max(self.stopped, failed.models_stopped)
        elif kind == "run_note":
            self.notes.append(event.run_note.message)
        elif kind == "run_queued":
            self.run.queue_position = event.run_queued.position
            self.run.status_message = event.run_queued.message
        elif kind == "run_state_changed":
            self.run.state = event.run_state_changed.state
        elif kind == "run_finished":
            self.finished = event.run_finished
            self.run.state = event.run_finished.state
            self.run.stop_reason = event.run_finished.stop_reason
            self.failed = event.run_finished.models_failed
            self.stopped = max(self.stopped, event.run_finished.models_stopped)

    @property
    def elapsed(self) -> float:
        if self.finished is not None:
            return self.finished.duration.ToTimedelta().total_seconds()
        if self.run.state in (common_pb2.RUN_STATE_PENDING, common_pb2.RUN_STATE_QUEUED):
            return self.elapsed_at_snapshot
        return self.elapsed_at_snapshot + time.monotonic() - self.snapshot_clock

    def render(self) -> Group:
        run, conditions = self.run, self.run.stop_conditions
        budget = conditions.max_duration.ToTimedelta().total_seconds()
        done = max(len(self.models) + self.failed, run.models_evaluated + run.models_failed)
        state = enum_name(common_pb2.RunState, run.state, "RUN_STATE_")
        head = Text.assemble((run.name, "bold"), "  ", (state, "cyan"))
        if run.state == common_pb2.RUN_STATE_QUEUED:
            head.append(f"  position {run.queue_position}: {run.status_message}", style="yellow")
        if self.finished is not None:
            head.append(f"  ({enum_name(common_pb2.StopReason, self.finished.stop_reason, 'STOP_REASON_')})")
        parts: list[Any] = [head]
        if budget:
            elapsed = f"time {seconds_text(self.elapsed)} of {seconds_text(budget)}"
            parts.append(Meter(budget, min(self.elapsed, budget), elapsed))
        limit = f" of {conditions.max_models}" if conditions.max_models else ""
        best = f"{self.best:.4f}" if self.best is not None else "-"
        target = f" (target {conditions.target_score:g})" if conditions.HasField("target_score") else ""
        metric = enum_name(common_pb2.Metric, run.primary_metric, "METRIC_")
        stopped = f", stopped {self.stopped}" if self.stopped else ""
        counts = f"models {done}{limit}, failed {self.failed}{stopped}, best {metric} {best}{target}"
        if conditions.max_models:
            parts.append(Meter(conditions.max_models, min(done, conditions.max_models), counts))
        else:
            parts.append(Text(counts))
        top = sorted(
            self.models.values(), key=lambda m: m.primary_score, reverse=metrics.higher_is_better(run.primary_metric)
        )
        parts.append(
            table(
                "best models so far",
                [Col("#"), text_col("family", least=14), Col(metric), Col("fit s", drop=1), Col("model")],
                (
                    [i + 1, m.model_family, f"{m.primary_score:.4f}", f"{m.fit_time_seconds:.2f}", m.index]
                    for i, m in enumerate(top[:10])
                ),
            )
        )
        if self.notes:
            parts.append(Text("notes:", style="bold"))
            parts += [Text(f"  - {note}") for note in self.notes]
        if self.finished is not None and self.finished.message:
            failed = self.finished.state in (common_pb2.RUN_STATE_FAILED, common_pb2.RUN_STATE_CANCELLED)
            parts.append(Text(self.finished.message, style="red" if failed else ""))
        return Group(*parts)
