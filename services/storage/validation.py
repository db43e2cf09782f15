"""Checks of user input that need no database: names, descriptions, stop
conditions, the problem set-up against a dataset's profile, results. Each
failure names the field and the fix."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format

from automl.common import metrics, stopping
from automl.common.errors import FieldViolation, InvalidArgument
from automl.v1 import common_pb2 as c
from automl.v1 import run_pb2

# A run's notes: what the runner adapted to or fell back on, one line each.
MAX_NOTES = 50
MAX_NOTE_CHARS = 500
# The last note of a run that was sent more than MAX_NOTES.
NOTES_DROPPED = f"(later notes were not kept: a run keeps at most {MAX_NOTES})"


def check_display_name(value: str, field: str, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidArgument.field(field, "required: 1 to 256 characters")
    if len(value) > 256:
        raise InvalidArgument.field(field, f"{len(value)} characters: at most 256")


def check_description(value: str, field: str) -> None:
    if len(value) > 4096:
        raise InvalidArgument.field(field, f"{len(value)} characters: at most 4096")


def check_stop_conditions(conditions: dict[str, Any], field: str, require_bound: bool = False) -> list[FieldViolation]:
    """Stop conditions as the proto3 JSON mapping of StopConditions
    ({"maxDuration": "60s", "targetScore": 0.9, "maxModels": 10, ...}), checked
    by the rule every service uses (automl.common.stopping)."""
    try:
        message = json_format.ParseDict(conditions, c.StopConditions())
    except json_format.ParseError as exc:
        return [FieldViolation(field, f"not stop conditions: {exc}")]
    return stopping.check(message, field, require_bound)


def check_problem(
    columns: dict[str, dict[str, Any]],
    target: str,
    task: int,
    metric: int,
    excluded: Sequence[str],
    row_count: int,
) -> tuple[int, int]:
    """Resolve the task and metric from the target's profile, or say what is wrong."""
    if not target:
        raise InvalidArgument.field("experiment.target_column", "required: the column to predict")
    if target not in columns:
        names = ", ".join(list(columns)[:20])
        raise InvalidArgument.field("experiment.target_column", f"{target!r} is not a column of the dataset ({names})")
    unknown = [name for name in excluded if name not in columns]
    if unknown:
        raise InvalidArgument.field("experiment.excluded_columns", f"not columns of the dataset: {', '.join(unknown)}")
    if target in excluded:
        raise InvalidArgument.field("experiment.excluded_columns", f"the target {target!r} cannot be excluded")
    profile = columns[target]
    kind = profile.get("inferredType", "COLUMN_TYPE_UNSPECIFIED")
    if int(profile.get("missingCount", 0)) >= row_count:
        raise InvalidArgument.field("experiment.target_column", f"{target!r} has no value on any row")
    numeric = kind == "COLUMN_TYPE_NUMERIC"
    distinct = int(profile.get("distinctCount", 0))
    if task in (c.TASK_UNSPECIFIED, c.TASK_AUTO):
        # Many distinct numbers: a quantity to regress; few: class codes.
        task = c.TASK_REGRESSION if numeric and distinct > max(20, row_count // 20) else c.TASK_CLASSIFICATION
    elif task == c.TASK_REGRESSION and not numeric:
        raise InvalidArgument.field(
            "experiment.task",
            f"regression needs a numeric target; {target!r} is {kind.removeprefix('COLUMN_TYPE_').lower()}",
        )
    elif task not in (c.TASK_CLASSIFICATION, c.TASK_REGRESSION):
        raise InvalidArgument.field("experiment.task", f"unknown task {task}")
    if task == c.TASK_CLASSIFICATION and distinct < 2:
        raise InvalidArgument.field("experiment.target_column", f"{target!r} has one class only: nothing to learn")
    metric = metric or metrics.default_metric(task)
    if metric not in c.Metric.values() or not metrics.suits(metric, task):
        raise InvalidArgument.field(
            "experiment.primary_metric",
            f"{c.Metric.Name(metric) if metric in c.Metric.values() else metric} does not suit {c.Task.Name(task)}",
        )
    return task, metric


def check_search_settings(folds: int, holdout: float, families: Sequence[str]) -> list[FieldViolation]:
    violations = []
    if folds and not 2 <= folds <= 20:
        violations.append(FieldViolation("experiment.cv_folds", f"{folds}: use 2 to 20 (0 for 5)"))
    if not 0 <= holdout <= 0.5 or math.isnan(holdout):
        violations.append(FieldViolation("experiment.holdout_fraction", f"{holdout}: use 0 to 0.5 (0 for 0.2)"))
    bad = [f for f in families if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,127}", f)]
    if bad:
        violations.append(FieldViolation("experiment.allowed_model_families", f"not model names: {', '.join(bad)}"))
    return violations


def check_result(result: dict[str, Any], field: str) -> None:
    if result.get("outcome") not in run_pb2.ModelResult.Outcome.values() or not result.get("outcome"):
        raise InvalidArgument.field(f"{field}.outcome", "required: OUTCOME_SUCCEEDED or a failure outcome")
    if result.get("sample_rows", 0) < 0:
        raise InvalidArgument.field(f"{field}.sample_rows", "must be 0 (not recorded) or more")
    if len(result.get("job_type", "")) > 64:
        raise InvalidArgument.field(f"{field}.job_type", "at most 64 characters")
    for j, member in enumerate(result.get("ensemble_members", [])):
        weight = member.get("weight", 0.0)
        if not member.get("modelResult") or not math.isfinite(weight) or not 0 <= weight <= 1:
            raise InvalidArgument.field(f"{field}.ensemble_members[{j}]", "needs model_result and a weight from 0 to 1")
    if result["outcome"] == run_pb2.ModelResult.OUTCOME_SUCCEEDED:
        score = result.get("primary_score")
        if score is None or not math.isfinite(score):
            raise InvalidArgument.field(f"{field}.primary_score", "required and finite for a succeeded result")
        for m in result.get("metrics", []):
            if not math.isfinite(m["mean"]):
                raise InvalidArgument.field(f"{field}.metrics", f"{c.Metric.Name(m['metric'])} mean is not finite")


def check_notes(notes: Sequence[str], field: str) -> None:
    """Notes to add to a run: at most MAX_NOTES per request, each one non-empty
    line of at most MAX_NOTE_CHARS characters."""
    if len(notes) > MAX_NOTES:
        raise InvalidArgument.field(field, f"{len(notes)} notes: send at most {MAX_NOTES} (a run keeps {MAX_NOTES})")
    for i, note in enumerate(notes):
        if not note.strip():
            raise InvalidArgument.field(f"{field}[{i}]", "empty: a note is a human-readable line")
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidArgument.field(f"{field}[{i}]", f"{len(note)} characters: at most {MAX_NOTE_CHARS}")
