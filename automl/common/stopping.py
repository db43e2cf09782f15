"""A run's stop conditions and the one rule that says which has fired.

The runner enforces them on every result it records, and the gateway's
supervisor checks them again from what storage holds (so that a runner that
missed one, or a gateway restart, cannot make a run endless): both use this
module, so they can never disagree on what a condition means. The checks of
the conditions a user sends (the gateway's, storage's, the runner's) are here
too, with one set of messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from google.protobuf import duration_pb2

from automl.common import metrics
from automl.common.errors import FieldViolation
from automl.v1 import common_pb2 as c
from automl.v1 import run_pb2


@dataclass(frozen=True)
class Limits:
    """The run's stop conditions, as the runner enforces them."""

    max_duration: float
    """Seconds; 0: none."""
    target_score: float | None
    max_models: int
    no_improvement_models: int
    per_model_time_limit: float

    @classmethod
    def of(cls, conditions: c.StopConditions, default_time_limit: float) -> Limits:
        per_model = conditions.per_model_time_limit.ToTimedelta().total_seconds()
        return cls(
            max_duration=conditions.max_duration.ToTimedelta().total_seconds(),
            target_score=conditions.target_score if conditions.HasField("target_score") else None,
            max_models=conditions.max_models,
            no_improvement_models=conditions.no_improvement_models,
            per_model_time_limit=per_model if per_model != 0 else default_time_limit,
        )

    def problems(self) -> list[tuple[str, str]]:
        """(field, fix) of each condition that cannot work."""
        found = violations(
            "stop_conditions",
            max_duration=self.max_duration,
            per_model_time_limit=self.per_model_time_limit,
            max_models=self.max_models,
            no_improvement_models=self.no_improvement_models,
            target_score=self.target_score,
            require_bound=True,
        )
        return [(v.field, v.description) for v in found]


def violations(
    field: str,
    *,
    max_duration: float,
    per_model_time_limit: float,
    max_models: int,
    no_improvement_models: int,
    target_score: float | None,
    require_bound: bool = False,
) -> list[FieldViolation]:
    """What is wrong with the stop conditions at `field` (durations in seconds,
    0 for unset; target_score None for unset), each with its fix.
    `require_bound`: a run's own conditions, which must end it by themselves."""
    out = []
    if max_duration < 0:
        out.append(FieldViolation(f"{field}.max_duration", "must be positive, or unset for no time budget"))
    if per_model_time_limit < 0:
        out.append(
            FieldViolation(f"{field}.per_model_time_limit", "must be positive, or unset for the server's default")
        )
    for key, count in (("max_models", max_models), ("no_improvement_models", no_improvement_models)):
        if count < 0:
            out.append(FieldViolation(f"{field}.{key}", f"{count}: must be 0 (no limit) or more"))
    if target_score is not None and not math.isfinite(target_score):
        out.append(FieldViolation(f"{field}.target_score", "must be a finite number"))
    if require_bound and not out and max_duration == 0 and max_models == 0 and target_score is None:
        out.append(
            FieldViolation(field, "set max_duration, max_models or target_score so that the run cannot go on forever")
        )
    return out


def check(conditions: c.StopConditions, field: str, require_bound: bool = False) -> list[FieldViolation]:
    """violations() of the message at `field`."""
    return violations(
        field,
        max_duration=_seconds(conditions.max_duration),
        per_model_time_limit=_seconds(conditions.per_model_time_limit),
        max_models=conditions.max_models,
        no_improvement_models=conditions.no_improvement_models,
        target_score=conditions.target_score if conditions.HasField("target_score") else None,
        require_bound=require_bound,
    )


def _seconds(duration: duration_pb2.Duration) -> float:
    # Either part negative is a negative duration: a Duration whose parts
    # disagree in sign is malformed, and must not pass as a small positive one.
    if duration.seconds < 0 or duration.nanos < 0:
        return -1.0
    return duration.seconds + duration.nanos / 1e9


@dataclass
class Progress:
    done: int = 0
    """Candidates recorded, failed ones included."""
    evaluated: int = 0
    failed: int = 0
    best_score: float | None = None
    best_result: str = ""
    since_improvement: int = 0


def limit_reached(
    limits: Limits, metric: c.Metric, progress: Progress, elapsed: float
) -> tuple[c.StopReason, str] | None:
    """The first of the run's own stop conditions that holds, with its detail."""
    if limits.target_score is not None and progress.best_score is not None:
        reached = (
            progress.best_score >= limits.target_score
            if metrics.higher_is_better(metric)
            else progress.best_score <= limits.target_score
        )
        if reached:
            return c.STOP_REASON_TARGET_SCORE, (
                f"target {metrics.name(metric)} {limits.target_score:g} reached by {progress.best_result} "
                f"({progress.best_score:.6g})"
            )
    if limits.max_models and progress.done >= limits.max_models:
        return c.STOP_REASON_MAX_MODELS, f"{progress.done} models evaluated (max_models {limits.max_models})"
    if limits.no_improvement_models and progress.since_improvement >= limits.no_improvement_models:
        return c.STOP_REASON_NO_IMPROVEMENT, f"no improvement in the last {progress.since_improvement} models"
    if limits.max_duration and elapsed >= limits.max_duration:
        return c.STOP_REASON_TIME_BUDGET, f"time budget of {limits.max_duration:g} s used"
    return None


def search_seconds(run: run_pb2.Run, now: float) -> float:
    """Search time a run has used at `now` (epoch seconds): the time of the
    runners that held it before (prior_search_time) plus its current runner's
    since the claim. Time while it was queued does not count."""
    prior = run.prior_search_time.ToTimedelta().total_seconds()
    if run.state not in (c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING):
        return prior
    claim = run.claim_time if run.HasField("claim_time") else run.start_time
    if not claim.seconds and not claim.nanos:
        return prior
    return prior + max(0.0, now - claim.ToNanoseconds() / 1e9)
