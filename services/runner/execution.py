"""One run's search, from RUNNING to its terminal state.

The loop keeps every worker busy with a fresh candidate, records each result
(storage, then an event, then aikit's guider), and ends the run on the first
stop condition: a stop request (StopExecution, or STOPPING written by someone
else and seen on the heartbeat), or one of the run's own limits, which the
runner enforces itself so that a lost gateway cannot make a run endless.
When a run stops, no new candidate starts; candidates under way get the grace
period, then their workers are killed and they are recorded INTERRUPTED.

Side effects go through a `RunRecorder` (storage and notifier over gRPC in
the service, anything in tests); nothing here knows of gRPC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from google.protobuf import duration_pb2

from automl.common import metrics
from automl.common.stopping import Limits, Progress, limit_reached
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, run_pb2
from services.runner import scoring
from services.runner.candidates import Candidate, Candidates, Exhausted
from services.runner.workers import Evaluation, Outcome, Pool

if TYPE_CHECKING:
    from services.runner.dask_pool import DaskPool

log = logging.getLogger("automl.runner.execution")

TICK_SECONDS = 0.25
ENDING_SECONDS = 0.3  # to store the interrupted candidates and the final state (measured: about 0.1 s)
OUTCOMES = {
    Outcome.SUCCEEDED: run_pb2.ModelResult.OUTCOME_SUCCEEDED,
    Outcome.FAILED: run_pb2.ModelResult.OUTCOME_FAILED,
    Outcome.TIMED_OUT: run_pb2.ModelResult.OUTCOME_TIMED_OUT,
    Outcome.OUT_OF_MEMORY: run_pb2.ModelResult.OUTCOME_OUT_OF_MEMORY,
    Outcome.INTERRUPTED: run_pb2.ModelResult.OUTCOME_INTERRUPTED,
}
# The state a run ends in, by why it stopped.
FINAL_STATE = {
    c.STOP_REASON_USER: c.RUN_STATE_STOPPED,
    c.STOP_REASON_ERROR: c.RUN_STATE_FAILED,
    c.STOP_REASON_RUNNER_LOST: c.RUN_STATE_FAILED,
}


def run_event(run: str, experiment: str, **payload: object) -> event_pb2.Event:
    """An event of a run, stamped now; the notifier numbers it."""
    event = event_pb2.Event(run=run, experiment=experiment, **payload)  # type: ignore[arg-type]
    event.create_time.GetCurrentTime()
    return event


class RunGone(Exception):
    """The run ended or changed hands elsewhere: stop without writing anything."""


class RunRecorder(Protocol):
    """Where a run's state, results and events go (storage and notifier)."""

    async def set_state(
        self, expected: Sequence[int], state: int, reason: int = 0, message: str = ""
    ) -> run_pb2.Run: ...

    async def heartbeat(self) -> run_pb2.Run: ...

    async def store_result(self, result: run_pb2.ModelResult) -> tuple[run_pb2.ModelResult, run_pb2.Run]: ...

    async def publish(self, events: list[event_pb2.Event]) -> None: ...


def kill_time(grace: float) -> float:
    """When the candidates still under way are killed: the end of the grace
    period, less the time it takes to record them and end the run, so that
    the run ends within the grace period."""
    return time.monotonic() + max(0.0, grace - min(ENDING_SECONDS, grace / 4))


@dataclass
class Stop:
    reason: int
    message: str
    deadline: float
    """monotonic time after which candidates under way are killed."""


@dataclass
class Execution:
    """A run this runner executes."""

    run: run_pb2.Run
    limits: Limits
    scorers: list[scoring.Scorer]
    candidates: Candidates
    pool: Pool | DaskPool
    recorder: RunRecorder
    grace: float
    memory_limit: int
    heartbeat_seconds: float
    progress: Progress = field(default_factory=Progress)
    stop: Stop | None = None
    started: float = field(default_factory=time.monotonic)
    workers_freed: Callable[[], None] = lambda: None
    """called once the pool is closed, before the run's end is written"""
    drawn: int = 0
    _stopping: asyncio.Lock = field(default_factory=asyncio.Lock)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def metric(self) -> int:
        return self.run.primary_metric

    def event(self, **payload: object) -> event_pb2.Event:
        return run_event(self.run.name, self.run.experiment, **payload)

    # ------------------------------------------------------------ stopping

    async def request_stop(self, reason: int, message: str, grace: float | None = None) -> run_pb2.Run:
        """Stop drawing candidates; those under way get `grace` seconds. The
        first request wins; later ones return the run as it stands."""
        async with self._stopping:
            if self.stop is not None:
                return self.run
            grace = self.grace if grace is None else grace
            self.stop = Stop(reason, message, kill_time(grace))
            self._wake.set()
            log.info("stopping", extra={"run": self.name, "reason": c.StopReason.Name(reason), "detail": message})
            run = await self.recorder.set_state([c.RUN_STATE_RUNNING], c.RUN_STATE_STOPPING, reason, message)
            self.run = run
            changed = event_pb2.RunStateChanged(
                previous_state=c.RUN_STATE_RUNNING, state=c.RUN_STATE_STOPPING, stop_reason=reason, message=message
            )
            await self.recorder.publish(
                [
                    self.event(stop_requested=event_pb2.StopRequested(reason=reason, message=message)),
                    self.event(run_state_changed=changed),
                ]
            )
            return run

    def _stopped_elsewhere(self, run: run_pb2.Run) -> None:
        """STOPPING written by another party (seen on the heartbeat): obey it."""
        if run.state == c.RUN_STATE_STOPPING and self.stop is None:
            self.stop = Stop(run.stop_reason or c.STOP_REASON_USER, run.status_message, kill_time(self.grace))
            self.run = run
            self._wake.set()

    # ---------------------------------------------------------------- loop

    async def execute(self) -> None:
        """Search until a stop condition, then end the run. Never raises."""
        beating = asyncio.create_task(self._heartbeat_forever(), name=f"heartbeat {self.name}")
        running: dict[asyncio.Task[Evaluation], tuple[int, Candidate]] = {}
        try:
            try:
                await self.pool.start()
                await self._loop(running)
            finally:
                # The workers go before the end is written: whoever sees the run
                # ended may start the next one on this runner at once.
                beating.cancel()
                for task in running:
                    task.cancel()
                self.pool.close()
                self.workers_freed()
            await self._finish()
        except RunGone as exc:
            log.warning("run ended elsewhere; stopping without writing", extra={"run": self.name, "detail": str(exc)})
        except Exception as exc:
            log.exception("run failed", extra={"run": self.name})
            await self._fail(f"the search failed: {type(exc).__name__}: {exc}")

    async def _loop(self, running: dict[asyncio.Task[Evaluation], tuple[int, Candidate]]) -> None:
        while True:
            if self.stop is None and (reached := limit_reached(self.limits, self.metric, self.progress, self.elapsed)):
                await self.request_stop(*reached)
            while self.stop is None and len(running) < self.pool.size and self._may_draw():
                try:
                    candidate = await asyncio.to_thread(self.candidates.next)
                except Exhausted as exc:
                    await self.request_stop(c.STOP_REASON_SEARCH_EXHAUSTED, str(exc))
                    break
                if self.stop is not None:  # asked to stop while drawing: start nothing new
                    break
                self.drawn += 1
                task = asyncio.create_task(
                    self.pool.evaluate(
                        candidate.job_id, candidate.job_param, self.limits.per_model_time_limit, self.memory_limit
                    )
                )
                running[task] = (self.drawn, candidate)
            if not running:
                if self.stop is None:  # every allowed candidate drawn and recorded
                    await self.request_stop(c.STOP_REASON_MAX_MODELS, f"{self.drawn} models evaluated")
                    continue
                return
            self._wake.clear()
            waker = asyncio.create_task(self._wake.wait())
            done, _ = await asyncio.wait({*running, waker}, timeout=self._tick(), return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
            for task in done - {waker}:
                index, candidate = running.pop(task)  # type: ignore[arg-type]
                await self._record(index, candidate, task.result())  # type: ignore[arg-type]
            if self.stop is not None and time.monotonic() >= self.stop.deadline:
                self.pool.interrupt()

    def _may_draw(self) -> bool:
        return not self.limits.max_models or self.drawn < self.limits.max_models

    def _tick(self) -> float:
        """How long to wait for a result: wake up on time for the budget and
        for the end of the grace period."""
        tick = TICK_SECONDS
        if self.stop is not None:
            tick = min(tick, self.stop.deadline - time.monotonic())
        elif self.limits.max_duration:
            tick = min(tick, self.limits.max_duration - self.elapsed)
        return max(0.01, tick)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # ----------------------------------------------------------- recording

    async def _record(self, index: int, candidate: Candidate, evaluation: Evaluation) -> None:
        result = run_pb2.ModelResult(
            index=index,
            job_id=candidate.job_id,
            model_family=candidate.model_family,
            pipeline_steps=candidate.pipeline_steps,
            model_json=candidate.model_json,
            outcome=OUTCOMES[evaluation.outcome],
            error_message=evaluation.error,
        )
        if evaluation.rows is not None:
            summary = scoring.summarize(evaluation.rows, self.scorers)
            for fold in summary.folds:
                result.folds.add(fold_nb=fold["fold_nb"], values=fold["values"])
            for m in summary.metrics:
                entry = result.metrics.add(metric=m["metric"], mean=m["mean"], std=m["std"])
                if m["train_mean"] is not None:
                    entry.train_mean = m["train_mean"]
            result.folds_run = summary.folds_run
            result.fit_time_seconds = summary.fit_time
            result.score_time_seconds = summary.score_time
            if summary.primary_score is None:
                result.outcome = run_pb2.ModelResult.OUTCOME_FAILED
                result.error_message = f"{metrics.name(self.metric)} could not be computed on every fold"
            else:
                result.primary_score = summary.primary_score
        stored, run = await self.recorder.store_result(result)
        self.run = run
        await asyncio.to_thread(
            self.candidates.record,
            candidate.job_id,
            evaluation.rows if stored.outcome == run_pb2.ModelResult.OUTCOME_SUCCEEDED else None,
            stored.error_message,
        )
        p = self.progress
        p.done, p.evaluated, p.failed = (
            run.models_evaluated + run.models_failed,
            run.models_evaluated,
            run.models_failed,
        )
        if stored.was_new_best:
            p.best_score, p.best_result, p.since_improvement = stored.primary_score, stored.name, 0
        else:
            p.since_improvement += 1
        if stored.outcome == run_pb2.ModelResult.OUTCOME_SUCCEEDED:
            event = self.event(
                model_evaluated=event_pb2.ModelEvaluated(
                    model_result=stored.name,
                    index=stored.index,
                    model_family=stored.model_family,
                    primary_score=stored.primary_score,
                    metrics=stored.metrics,
                    fit_time_seconds=stored.fit_time_seconds,
                    folds_run=stored.folds_run,
                    is_new_best=stored.was_new_best,
                    best_score=p.best_score if p.best_score is not None else stored.primary_score,
                    models_evaluated=p.evaluated,
                    models_failed=p.failed,
                )
            )
        else:
            event = self.event(
                model_failed=event_pb2.ModelFailed(
                    model_result=stored.name,
                    index=stored.index,
                    model_family=stored.model_family,
                    outcome=stored.outcome,
                    error_message=stored.error_message,
                    models_failed=p.failed,
                )
            )
        await self.recorder.publish([event])
        log.info(
            "candidate done",
            extra={
                "run": self.name,
                "index": index,
                "family": candidate.model_family,
                "outcome": evaluation.outcome.value,
                "score": stored.primary_score if stored.HasField("primary_score") else None,
                "seconds": round(evaluation.seconds, 2),
            },
        )

    # -------------------------------------------------------------- ending

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                self._stopped_elsewhere(await self.recorder.heartbeat())
            except RunGone:
                log.warning("heartbeat refused: the run ended elsewhere", extra={"run": self.name})
                self.pool.interrupt()
                return
            except Exception as exc:  # noqa: BLE001 - storage briefly away: the next beat may pass
                log.warning("heartbeat failed", extra={"run": self.name, "error": repr(exc)})

    async def _finish(self) -> None:
        assert self.stop is not None
        reason = self.stop.reason
        state = FINAL_STATE.get(reason, c.RUN_STATE_SUCCEEDED)
        if state == c.RUN_STATE_STOPPED and self.progress.done == 0:
            state = c.RUN_STATE_CANCELLED
        await self._end(state, reason, self.stop.message)

    async def _fail(self, message: str) -> None:
        try:
            await self._end(c.RUN_STATE_FAILED, c.STOP_REASON_ERROR, message)
        except Exception:
            log.exception("cannot record the failure of the run", extra={"run": self.name})

    async def _end(self, state: int, reason: int, message: str) -> None:
        previous = self.run.state
        run = await self.recorder.set_state([c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING], state, reason, message)
        self.run = run
        duration = duration_pb2.Duration()
        duration.FromTimedelta(run.end_time.ToDatetime() - run.start_time.ToDatetime())
        finished = event_pb2.RunFinished(
            state=state,
            stop_reason=run.stop_reason or reason,
            message=run.status_message,
            models_evaluated=run.models_evaluated,
            models_failed=run.models_failed,
            best_model_result=run.best_model_result,
            duration=duration,
        )
        if run.HasField("best_score"):
            finished.best_score = run.best_score
        await self.recorder.publish(
            [
                self.event(
                    run_state_changed=event_pb2.RunStateChanged(
                        previous_state=previous, state=state, stop_reason=run.stop_reason or reason, message=message
                    )
                ),
                self.event(run_finished=finished),
            ]
        )
        log.info(
            "run ended",
            extra={
                "run": self.name,
                "state": c.RunState.Name(state),
                "models": run.models_evaluated + run.models_failed,
            },
        )
