"""One run's search, from RUNNING to its terminal state.

The loop keeps every worker busy with a fresh candidate (or, on a large
table, a promotion of a good one to a larger row sample: racing.Halving),
records each result (storage, then an event, then aikit's guider), and ends
the run on the first stop condition: a stop request (StopExecution, or
STOPPING written by someone else and seen on the heartbeat), or one of the
run's own limits, which the runner enforces itself so that a lost gateway
cannot make a run endless. When a run stops, no new candidate starts;
candidates under way get the grace period, then their workers are killed and
they are recorded INTERRUPTED (counted as stopped, not failed).

The time budget is kept: no candidate starts that its predicted time
(racing.Durations) says cannot end before the search's deadline, the
candidates under way are stopped at that deadline, and the greedy ensemble
of the best models (services.runner.ensemble) is built in the time reserved
after it. Hopeless candidates stop after their first folds (racing).

A run taken over from a lost runner resumes (`resume`) from its stored
results: their counts, best score and ensemble members (from their stored
out-of-fold predictions) carry on, the candidates already evaluated are not
drawn again, and its time budget counts what the runners before used. A
runner that shuts down hands its running runs back (`hand_back`): they go
back to the queue, not to a terminal state.

Side effects go through a `RunRecorder` (storage and notifier over gRPC in
the service, anything in tests); nothing here knows of gRPC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from automl.common import metrics, runs
from automl.common.runs import final_state, run_event
from automl.common.stopping import Limits, Progress, limit_reached
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, run_pb2
from services.runner import ensemble, racing, scoring
from services.runner.candidates import Candidate, Candidates, Exhausted
from services.runner.candidates import work as candidate_work
from services.runner.workers import Evaluation, Outcome, Pool

if TYPE_CHECKING:
    from services.runner.dask_pool import DaskPool

log = logging.getLogger("automl.runner.execution")

TICK_SECONDS = 0.25
INTERRUPTED_SECONDS = 2.0  # killed workers' candidates end within moments (a pipe's end, or a poll)
ENDING_SECONDS = 0.3  # to store the interrupted candidates and the final state (measured: about 0.1 s)
FIT_ATTEMPTS = 20
"""Draws in a row whose predicted time does not fit before the deadline: then the search closes."""
OVERRUN = 5.0
OVERRUN_SHARE = 0.25
OVERRUN_FLOOR_SECONDS = 10.0
"""Under a time budget, a candidate whose family's time was measured in the
run is stopped past OVERRUN times its predicted time, once that is over
OVERRUN_SHARE of the budget and OVERRUN_FLOOR_SECONDS: aikit draws pipelines
whose steps cost far more than their model (on titanic, two predicted at
about a second each held both workers for the last 37 s of a 60 s run).
The floor leaves short runs alone: their budget ends such a candidate soon
enough, and a second's noise is not an overrun."""
ENSEMBLE_CANDIDATES = 20
"""The best complete results kept (with their out-of-fold predictions) for the ensemble."""
ENSEMBLE_ROUNDS = 25
"""Forward-selection rounds (AutoGluon's default ensemble size is 25; auto-sklearn's 50)."""
NO_ENSEMBLE = (c.STOP_REASON_ERROR, c.STOP_REASON_RUNNER_LOST)
COUNTED_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
OUTCOMES = {
    Outcome.SUCCEEDED: run_pb2.ModelResult.OUTCOME_SUCCEEDED,
    Outcome.FAILED: run_pb2.ModelResult.OUTCOME_FAILED,
    Outcome.TIMED_OUT: run_pb2.ModelResult.OUTCOME_TIMED_OUT,
    Outcome.OUT_OF_MEMORY: run_pb2.ModelResult.OUTCOME_OUT_OF_MEMORY,
    Outcome.INTERRUPTED: run_pb2.ModelResult.OUTCOME_INTERRUPTED,
}


def reserve(budget: float) -> float:
    """Seconds kept at the end of a time budget for stopping the candidates
    under way, building the ensemble and ending the run."""
    return min(0.1 * budget, 1.0 + 0.01 * budget)


@dataclass
class SearchData:
    """What the loop needs of the search rows: row samples for large tables,
    fold assignment and targets for the ensemble."""

    y: npt.NDArray[Any]
    classification: bool
    folds: int
    seed: int

    @property
    def classes(self) -> npt.NDArray[Any] | None:
        return np.unique(self.y) if self.classification else None

    def codes(self) -> npt.NDArray[np.intp] | None:
        return np.unique(self.y, return_inverse=True)[1] if self.classification else None


@dataclass
class Job:
    """One evaluation: a candidate on the rows of a rung."""

    index: int
    candidate: Candidate
    rung: int
    rows: int
    overrun: float | None = None
    """Its time limit under the budget (OVERRUN), when tighter than the per-model one."""


@dataclass
class Member:
    """A complete result kept for the ensemble."""

    score: float
    """Mean primary score in aikit's sign (greater is better)."""
    name: str
    index: int
    candidate: Candidate
    predictions: npt.NDArray[np.float32]
    fit_time: float
    rung: int


class RunGone(Exception):
    """The run ended or changed hands elsewhere: stop without writing anything."""


class RunRecorder(Protocol):
    """Where a run's state, results and events go (storage and notifier)."""

    async def set_state(
        self,
        expected: Sequence[c.RunState],
        state: c.RunState,
        reason: c.StopReason = c.STOP_REASON_UNSPECIFIED,
        message: str = "",
    ) -> run_pb2.Run: ...

    async def heartbeat(self) -> run_pb2.Run: ...

    async def store_result(self, result: run_pb2.ModelResult) -> tuple[run_pb2.ModelResult, run_pb2.Run]: ...

    async def publish(self, events: list[event_pb2.Event]) -> None: ...

    async def add_notes(self, notes: list[str]) -> None: ...

    async def keep_predictions(self, predictions: npt.NDArray[np.float32]) -> str:
        """Store a result's out-of-fold predictions; the artifact's name."""
        ...


def kill_time(grace: float) -> float:
    """When the candidates still under way are killed: the end of the grace
    period, less the time it takes to record them and end the run, so that
    the run ends within the grace period."""
    return time.monotonic() + max(0.0, grace - min(ENDING_SECONDS, grace / 4))


@dataclass
class Stop:
    reason: c.StopReason
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
    data: SearchData | None = None
    """The search rows' target: without it, no halving and no ensemble."""
    drawn: int = 0
    closing: str = ""
    """Why no candidate can start any more (the time left is too short)."""
    _stopping: asyncio.Lock = field(default_factory=asyncio.Lock)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    halving: racing.Halving = field(init=False)
    durations: racing.Durations = field(default_factory=racing.Durations)
    members: dict[int, list[Member]] = field(default_factory=dict)
    """Per rung, the best complete results with their out-of-fold predictions."""
    by_job: dict[str, Candidate] = field(default_factory=dict)
    notes_told: int = 0
    handing_back: str = ""
    """Why the runner lets go of the run (it shuts down): it goes back to the queue."""
    ending: bool = False
    """The search is over: events wait to go out with the run's final events."""
    gathering: bool = False
    """Results that ended together are being recorded: their events wait for the last one's."""
    interrupted: bool = False
    """The candidates under way were killed (the stop's grace is over)."""
    held: list[event_pb2.Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        data = self.data
        rows = len(data.y) if data is not None else 0
        self.halving = racing.Halving(rows, data.codes() if data is not None else None, data.seed if data else 0)

    @property
    def search_deadline(self) -> float | None:
        """monotonic time at which the candidates under way are stopped: the
        end of the budget less what ending the run takes."""
        budget = self.limits.max_duration
        return self.started + budget - reserve(budget) if budget else None

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def metric(self) -> c.Metric:
        return self.run.primary_metric

    def event(self, **payload: object) -> event_pb2.Event:
        return run_event(self.run.name, self.run.experiment, **payload)

    # -------------------------------------------------------------- resume

    def resume(self, results: Sequence[run_pb2.ModelResult], predictions: dict[str, npt.NDArray[np.float32]]) -> None:
        """Go on from the results a lost runner stored: counts, best score and
        lack of progress from them, their candidates never drawn again, the
        complete ones measured for the time predictions and, with their stored
        out-of-fold `predictions` (by result name), kept for the ensemble."""
        from aikit.tools.json_helper import json_decoder

        run, p = self.run, self.progress
        p.done, p.evaluated, p.failed = (
            run.models_evaluated + run.models_failed,
            run.models_evaluated,
            run.models_failed,
        )
        if run.HasField("best_score"):
            p.best_score, p.best_result = run.best_score, run.best_model_result
        best_seen = not run.best_model_result
        sizes = {rung.size: i for i, rung in enumerate(self.halving.rungs)}
        folds = self.data.folds if self.data is not None else 0
        for result in sorted(results, key=lambda r: r.index):
            self.drawn = max(self.drawn, result.index)
            self.candidates.seen.add(result.job_id)
            if result.outcome != run_pb2.ModelResult.OUTCOME_INTERRUPTED and best_seen:
                p.since_improvement += 1
            best_seen = best_seen or result.name == run.best_model_result
            if result.outcome != run_pb2.ModelResult.OUTCOME_SUCCEEDED or result.job_type == "ensemble":
                continue
            rung = sizes.get(result.sample_rows, 0)
            sign = self.scorers[0].sign
            primary = next((m for m in result.metrics if m.metric == self.scorers[0].metric), None)
            if primary is None:
                continue
            complete = result.folds_run >= folds
            self.halving.record(result.job_id, rung, sign * primary.mean, primary.std, complete)
            if not complete:
                continue
            try:
                model = json_decoder(json.loads(result.model_json))
            except (ValueError, TypeError, KeyError) as exc:  # not one this runner can rebuild: not a member
                log.warning("stored result not resumed", extra={"result": result.name, "error": repr(exc)})
                continue
            candidate = Candidate(
                job_id=result.job_id,
                job_type=result.job_type,
                job_param={"model_json": model},
                model_json=result.model_json,
                model_family=result.model_family,
                pipeline_steps=list(result.pipeline_steps),
                work=candidate_work(model),
            )
            self.by_job[result.job_id] = candidate
            self.durations.record(
                result.model_family,
                result.sample_rows * candidate.work,
                result.fit_time_seconds + result.score_time_seconds,
            )
            kept = predictions.get(result.name)
            if kept is not None:
                member = Member(
                    sign * primary.mean, result.name, result.index, candidate, kept, result.fit_time_seconds, rung
                )
                self._keep(member)

    # ------------------------------------------------------------ stopping

    async def request_stop(self, reason: c.StopReason, message: str, grace: float | None = None) -> run_pb2.Run:
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
            await self.recorder.publish(runs.stopping_events(run, reason, message))
            return run

    def hand_back(self, message: str) -> None:
        """The runner shuts down: candidates under way are interrupted and the
        run goes back to the queue for a runner to go on with it."""
        if self.stop is None:
            self.handing_back = message
            self.stop = Stop(c.STOP_REASON_RUNNER_LOST, message, time.monotonic())
            self._wake.set()

    def _stopped_elsewhere(self, run: run_pb2.Run) -> None:
        """STOPPING written by another party (seen on the heartbeat): obey it."""
        if run.state == c.RUN_STATE_STOPPING and self.stop is None:
            self.stop = Stop(run.stop_reason or c.STOP_REASON_USER, run.status_message, kill_time(self.grace))
            self.run = run
            self._wake.set()

    # ---------------------------------------------------------------- loop

    async def execute(self) -> None:
        """Search until a stop condition, build the ensemble, then end the run. Never raises."""
        beating = asyncio.create_task(self._heartbeat_forever(), name=f"heartbeat {self.name}")
        running: dict[asyncio.Task[Evaluation], Job] = {}
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
            # What comes now (the ensemble) goes out with the final events a
            # few milliseconds later: one message to every watcher, not two.
            self.ending = True
            if self.handing_back:
                await self._hand_back()
                return
            if self.stop is not None and self.stop.reason not in NO_ENSEMBLE:
                await self._ensemble()
            await self._finish()
        except RunGone as exc:
            log.warning("run ended elsewhere; stopping without writing", extra={"run": self.name, "detail": str(exc)})
        except Exception as exc:
            log.exception("run failed", extra={"run": self.name})
            await self._fail(f"the search failed: {type(exc).__name__}: {exc}")
        finally:
            await self._release()  # what is still held, whatever ended the run

    async def _loop(self, running: dict[asyncio.Task[Evaluation], Job]) -> None:
        while True:
            await self._check_limits()
            while self.stop is None and not self.closing and len(running) < self.pool.size and self._may_draw():
                job = await self._next_job()
                await self._tell_notes()
                if job is None or self.stop is not None:  # asked to stop while drawing: start nothing new
                    break
                job.overrun = self._overrun_limit(job)
                task = asyncio.create_task(
                    self.pool.evaluate(
                        job.candidate.job_id,
                        self._job_param(job),
                        job.overrun or self.limits.per_model_time_limit,
                        self.memory_limit,
                    )
                )
                running[task] = job
            if not running:
                if self.stop is None:  # every allowed candidate drawn and recorded, or no time for another
                    if self.closing:
                        await self.request_stop(c.STOP_REASON_TIME_BUDGET, self.closing)
                    else:
                        await self.request_stop(c.STOP_REASON_MAX_MODELS, f"{self.drawn} models evaluated")
                    continue
                return
            if self.interrupted:
                # Killed, every candidate under way ends within moments: all of
                # their results are recorded, then told in one Publish.
                done: set[asyncio.Task[Any]] = (await asyncio.wait(running, timeout=INTERRUPTED_SECONDS))[0]
            else:
                self._wake.clear()
                waker = asyncio.create_task(self._wake.wait())
                waiting: set[asyncio.Task[Any]] = {*running, waker}
                done = (await asyncio.wait(waiting, timeout=self._tick(), return_when=asyncio.FIRST_COMPLETED))[0]
                waker.cancel()
            ended = [task for task in running if task in done]  # the evaluations that ended (not the waker)
            # Results that ended together go out together: one message to every watcher, not one each.
            self.gathering = len(ended) > 1
            try:
                for task in ended:
                    await self._record(running.pop(task), task.result())
            finally:  # on a failure, execute() publishes what is held
                self.gathering = False
            await self._release()
            if self.stop is not None and time.monotonic() >= self.stop.deadline:
                self.pool.interrupt()
                self.interrupted = True

    async def _check_limits(self) -> None:
        if self.stop is not None:
            return
        deadline = self.search_deadline
        if deadline is not None and time.monotonic() >= deadline:
            # The candidates under way stop now: the rest of the budget is the ensemble's and the end's.
            await self.request_stop(
                c.STOP_REASON_TIME_BUDGET, f"time budget of {self.limits.max_duration:g} s used", grace=0
            )
        elif reached := limit_reached(self.limits, self.metric, self.progress, self.elapsed):
            await self.request_stop(*reached)

    async def _next_job(self) -> Job | None:
        """A promotion to a larger sample, or a new candidate, that can end
        before the deadline; None when the search is over or closing."""
        promoted = self.halving.promotion()
        if promoted is not None:
            job_id, rung = promoted
            rows = self.halving.rungs[rung].size
            if self._fits(self.by_job[job_id], rows):
                self.drawn += 1
                return Job(self.drawn, self.by_job[job_id], rung, rows)
        rows = self.halving.rungs[0].size
        for _ in range(FIT_ATTEMPTS):
            try:
                candidate = await self._draw()
            except Exhausted as exc:
                await self.request_stop(c.STOP_REASON_SEARCH_EXHAUSTED, str(exc))
                return None
            if candidate is None or self.stop is not None:
                return None
            if self._fits(candidate, rows):
                self.drawn += 1
                self.by_job[candidate.job_id] = candidate
                return Job(self.drawn, candidate, 0, rows)
        left = (self.search_deadline or 0.0) - time.monotonic()
        self.closing = (
            f"time budget of {self.limits.max_duration:g} s used: "
            f"{max(left, 0):.1f} s left, too short for another candidate"
        )
        return None

    async def _draw(self) -> Candidate | None:
        """The next candidate, or None when the search's deadline passes or a
        stop is asked first: a guided draw fits aikit's model of the results
        (seconds on a loaded machine), which must not hold up the budget."""
        drawing = asyncio.ensure_future(asyncio.to_thread(self.candidates.next))
        deadline = self.search_deadline
        self._wake.clear()
        waker = asyncio.create_task(self._wake.wait())
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        await asyncio.wait({drawing, waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waker.cancel()
        if drawing.done():
            return drawing.result()
        # Left to end in its thread; whatever it raises then is of no use.
        drawing.add_done_callback(lambda task: task.cancelled() or task.exception())
        return None

    def _fits(self, candidate: Candidate, rows: int) -> bool:
        """Whether a candidate is predicted to end before the deadline."""
        deadline = self.search_deadline
        predicted = self.durations.predict(candidate.model_family, rows * candidate.work)
        return deadline is None or predicted is None or time.monotonic() + predicted <= deadline

    def _overrun_limit(self, job: Job) -> float | None:
        """The job's time limit under the budget (see OVERRUN), or None: no
        budget, nothing measured of its family, or the per-model limit is tighter."""
        budget = self.limits.max_duration
        predicted = self.durations.predict(job.candidate.model_family, job.rows * job.candidate.work, any_family=False)
        if not budget or predicted is None:
            return None
        limit = max(OVERRUN * predicted, OVERRUN_SHARE * budget, OVERRUN_FLOOR_SECONDS)
        return limit if limit < self.limits.per_model_time_limit else None

    def _job_param(self, job: Job) -> dict[str, Any]:
        """What the worker gets: the model, its row sample, and the racing threshold of its rung."""
        param = dict(job.candidate.job_param)
        sample = self.halving.samples[job.rung]
        if sample is not None:
            param["rows"] = sample
        threshold = self.halving.threshold(job.rung)
        if threshold is not None:
            param["stopping_round"] = racing.RACE_AFTER_FOLDS - 1  # aikit counts folds from 0
            param["stopping_threshold"] = threshold
        return param

    async def _tell_notes(self) -> None:
        """The candidates' new notes (a fallback taken) go to the run and its watchers."""
        notes = self.candidates.notes[self.notes_told :]
        if notes:
            self.notes_told += len(notes)
            await self.recorder.add_notes(notes)

    def _may_draw(self) -> bool:
        return not self.limits.max_models or self.drawn < self.limits.max_models

    def _tick(self) -> float:
        """How long to wait for a result: wake up on time for the budget and
        for the end of the grace period."""
        tick = TICK_SECONDS
        if self.stop is not None:
            tick = min(tick, self.stop.deadline - time.monotonic())
        elif (deadline := self.search_deadline) is not None:
            tick = min(tick, deadline - time.monotonic())
        return max(0.01, tick)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # ----------------------------------------------------------- recording

    async def _record(self, job: Job, evaluation: Evaluation) -> None:
        candidate = job.candidate
        result = run_pb2.ModelResult(
            index=job.index,
            job_id=candidate.job_id,
            model_family=candidate.model_family,
            pipeline_steps=candidate.pipeline_steps,
            model_json=candidate.model_json,
            outcome=OUTCOMES[evaluation.outcome],
            error_message=evaluation.error,
            sample_rows=job.rows,
            job_type=candidate.job_type,
        )
        if evaluation.outcome == Outcome.TIMED_OUT and job.overrun is not None:
            result.error_message = (
                f"stopped after {evaluation.seconds:.1f} s: its limit under the {self.limits.max_duration:g} s "
                f"budget was {job.overrun:.1f} s: {OVERRUN:g} times the time predicted for it, "
                f"or {OVERRUN_SHARE:.0%} of the budget, or {OVERRUN_FLOOR_SECONDS:g} s, whichever is longest"
            )
        summary = self._summarize(result, evaluation.rows)
        complete = summary is not None and summary.folds_run >= (self.data.folds if self.data else summary.folds_run)
        if complete and evaluation.predictions is not None:
            result.predictions_artifact = await self._keep_predictions(evaluation.predictions)
        stored = await self._store(result)
        await asyncio.to_thread(
            self.candidates.record,
            candidate.job_id,
            evaluation.rows if stored.outcome == run_pb2.ModelResult.OUTCOME_SUCCEEDED else None,
            stored.error_message,
        )
        if stored.outcome == run_pb2.ModelResult.OUTCOME_SUCCEEDED and summary is not None:
            primary = summary.metrics[0]
            sign = self.scorers[0].sign
            mean, std = sign * primary["mean"], primary["std"]
            self.halving.record(candidate.job_id, job.rung, mean, std, complete)
            if complete:
                self.durations.record(candidate.model_family, job.rows * candidate.work, evaluation.seconds)
            if complete and evaluation.predictions is not None:
                self._keep(
                    Member(
                        mean, stored.name, stored.index, candidate, evaluation.predictions, summary.fit_time, job.rung
                    )
                )
        log.info(
            "candidate done",
            extra={
                "run": self.name,
                "index": job.index,
                "family": candidate.model_family,
                "rows": job.rows,
                "outcome": evaluation.outcome.value,
                "score": stored.primary_score if stored.HasField("primary_score") else None,
                "folds": stored.folds_run,
                "seconds": round(evaluation.seconds, 2),
            },
        )

    async def _keep_predictions(self, predictions: npt.NDArray[np.float32]) -> str:
        """Out-of-fold predictions kept in storage, so that an ensemble can be
        built again from stored results; a failure costs that, not the result."""
        try:
            return await self.recorder.keep_predictions(predictions)
        except Exception as exc:  # noqa: BLE001 - the result stands without them
            log.warning("predictions not kept", extra={"run": self.name, "error": f"{type(exc).__name__}: {exc}"})
            return ""

    def _summarize(self, result: run_pb2.ModelResult, rows: list[dict[str, Any]] | None) -> scoring.Summary | None:
        """Fill a result's folds and metrics from aikit's score table."""
        if rows is None:
            return None
        summary = scoring.summarize(rows, self.scorers)
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
            return None
        result.primary_score = summary.primary_score
        return summary

    async def _store(self, result: run_pb2.ModelResult) -> run_pb2.ModelResult:
        """Store a result, follow the run's counts and publish the result's event."""
        stored, run = await self.recorder.store_result(result)
        self.run = run
        p = self.progress
        p.done, p.evaluated, p.failed = (
            run.models_evaluated + run.models_failed,
            run.models_evaluated,
            run.models_failed,
        )
        if stored.outcome == run_pb2.ModelResult.OUTCOME_INTERRUPTED:
            pass  # a normal stop: not a model evaluated, not a failure, not a lack of progress
        elif stored.was_new_best:
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
                    models_stopped=run.models_stopped,
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
                    models_stopped=run.models_stopped,
                )
            )
        await self._publish([event])
        return stored

    # ------------------------------------------------------------ ensemble

    def _keep(self, member: Member) -> None:
        """Keep the best ENSEMBLE_CANDIDATES complete results' predictions of a rung."""
        kept = self.members.setdefault(member.rung, [])
        kept.append(member)
        kept.sort(key=lambda m: (-m.score, m.index))
        del kept[ENSEMBLE_CANDIDATES:]

    async def _ensemble(self) -> None:
        """A greedy ensemble (Caruana et al. 2004) of the kept results of the
        largest rows sample that has two, as one more leaderboard entry; a
        failure here costs the entry, not the run."""
        rungs = [rung for rung, kept in self.members.items() if len(kept) >= 2]
        if self.data is None or not rungs:
            return
        try:
            result = await asyncio.to_thread(self._ensemble_result, max(rungs))
            if result is not None:
                await self._store(result)
        except RunGone:
            raise
        except Exception as exc:  # the run's results stand without it
            log.exception("ensemble failed", extra={"run": self.name})
            await self._release()  # the note comes after what was held, as it happened
            await self.recorder.add_notes([f"the ensemble could not be built: {type(exc).__name__}: {exc}"])

    @staticmethod
    def _selection_score(name: str, classes: npt.NDArray[Any] | None, rows: int) -> Callable[..., float]:
        """The primary metric; a metric of counted rows (accuracy, F1) has ties,
        broken by the log loss, too little to outweigh one row: without it,
        blends that are better calibrated at the same accuracy are never chosen."""
        primary = ensemble.metric_function(name, classes)
        if name not in COUNTED_METRICS:
            return primary
        loss = ensemble.metric_function("log_loss_patched", classes)
        weight = 1.0 / (100.0 * rows)  # the loss term is clipped at 10: below a tenth of a row

        def score(y: npt.NDArray[Any], blend: npt.NDArray[np.float64]) -> float:
            return float(primary(y, blend) + weight * max(float(loss(y, blend)), -10.0))

        return score

    def _ensemble_result(self, rung: int) -> run_pb2.ModelResult | None:
        from aikit.tools.helper_functions import md5_hash
        from aikit.tools.json_helper import json_encoder

        assert self.data is not None
        data, members = self.data, list(self.members[rung])
        sample = self.halving.samples[rung]
        y = data.y if sample is None else data.y[sample]
        classes = data.classes
        names = [s.name for s in self.scorers]
        score = self._selection_score(names[0], classes, len(y))
        weights = ensemble.select([m.predictions for m in members], y, score, size=ENSEMBLE_ROUNDS)
        chosen = [(m, w) for m, w in zip(members, weights, strict=True) if w > 0]
        if len(chosen) < 2:
            log.info("ensemble of one model: not stored", extra={"run": self.name, "model": chosen[0][0].name})
            return None
        blend = ensemble.weighted_average([m.predictions for m, _ in chosen], [w for _, w in chosen])
        folds = ensemble.fold_assignment(y, data.classification, data.folds, data.seed)
        rows = ensemble.fold_rows(blend, y, folds, names, classes)
        models = [m.candidate.job_param["model_json"] for m, _ in chosen]
        model = ensemble.description(data.classification, models, [w for _, w in chosen])
        kind = model[0]
        result = run_pb2.ModelResult(
            index=self.drawn + 1,
            job_id=md5_hash(model),
            model_family=kind,
            pipeline_steps=[*(m.candidate.model_family for m, _ in chosen), kind],
            model_json=json.dumps(json_encoder(model)),
            outcome=run_pb2.ModelResult.OUTCOME_SUCCEEDED,
            sample_rows=len(y),
            job_type="ensemble",
        )
        for m, w in chosen:
            result.ensemble_members.add(model_result=m.name, index=m.index, weight=w)
        summary = self._summarize(result, rows)
        # Its cost: what refitting its members costs.
        result.fit_time_seconds = sum(m.fit_time for m, _ in chosen)
        if summary is None:
            return None
        log.info(
            "ensemble built",
            extra={"run": self.name, "members": len(chosen), "score": result.primary_score},
        )
        return result

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
        await self._end(final_state(reason, self.progress.done), reason, self.stop.message)

    async def _hand_back(self) -> None:
        run = await self.recorder.set_state(
            [c.RUN_STATE_RUNNING], c.RUN_STATE_QUEUED, c.STOP_REASON_UNSPECIFIED, self.handing_back
        )
        await self._release(runs.queued_events(run, c.RUN_STATE_RUNNING, self.handing_back))
        log.info("run handed back", extra={"run": self.name, "position": run.queue_position})

    async def _publish(self, events: list[event_pb2.Event]) -> None:
        """Publish now; or with the other results that ended at the same time;
        or, once the search is over, with the final events."""
        if self.ending or self.gathering:
            self.held += events
        else:
            await self.recorder.publish(events)

    async def _release(self, more: Sequence[event_pb2.Event] = ()) -> None:
        """Publish what is held (results that ended together, or the ensemble
        once the search is over), then `more`, in one Publish.

        Events a few milliseconds apart went out as separate Publishes, each
        one message to every watcher: with a thousand watchers, each queued
        behind the fan-out of the one before (the end reached the last of
        them over 100 ms late)."""
        events, self.held = [*self.held, *more], []
        if events:
            await self.recorder.publish(events)

    async def _fail(self, message: str) -> None:
        try:
            await self._end(c.RUN_STATE_FAILED, c.STOP_REASON_ERROR, message)
        except Exception:
            log.exception("cannot record the failure of the run", extra={"run": self.name})

    async def _end(self, state: c.RunState, reason: c.StopReason, message: str) -> None:
        previous = self.run.state
        run = await self.recorder.set_state([c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING], state, reason, message)
        self.run = run
        await self._release(runs.final_events(run, previous, message, reason))
        log.info(
            "run ended",
            extra={
                "run": self.name,
                "state": c.RunState.Name(state),
                "models": run.models_evaluated + run.models_failed,
            },
        )
