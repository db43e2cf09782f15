"""The supervisor: every few moments, every active run of every tenant is
checked against its stop conditions and its runner's heartbeat, queued runs
are handed to runners in the queue's order, and trainings whose runner went
silent are ended.

A run whose runner is lost is queued again for a takeover (up to
AUTOML_RUN_MAX_TAKEOVERS times): the next runner with capacity goes on from
its stored results with what is left of its time budget, which counts only
time a runner held it.

A run's end is written first, then told (RunStateChanged and RunFinished):
a runner killed in between leaves an ended run whose log never says so, and
whose live watchers wait. The supervisor remembers the runs it saw RUNNING
or STOPPING; once one has ended, and its runner had lost_after to tell it,
an end missing from the log is published (with the ids the runner would
have used, so that it is stored once whoever tells it). That memory is the
one thing it keeps: after a gateway restart, runs that ended meanwhile are
not checked.

The runner enforces the same conditions itself (automl.common.stopping, one
rule for both); the supervisor is what makes them hold when the runner does
not (a runner that missed one, a runner that died). It keeps no state that
matters: everything is read from storage on each round, so a restarted
gateway supervises exactly what the previous one did.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time

from google.protobuf import timestamp_pb2
from prometheus_client import Counter, Gauge

from automl.common import errors, status
from automl.common.events import new_event_id
from automl.common.runs import ACTIVE_STATES, final_events, final_state, is_terminal
from automl.common.settings import Settings
from automl.common.stopping import Limits, Progress, limit_reached, search_seconds
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, model_pb2, run_pb2, runner_service_pb2, storage_service_pb2
from gateway.backends import Backends, as_tenant
from gateway.control import RunControl, event

log = logging.getLogger("automl.gateway.supervisor")

ACTIVE_RUNS = Gauge("automl_active_runs", "Runs not yet ended, by state.", ["state"])
MODELS_EVALUATED = Counter(
    "automl_models_evaluated_total",
    "Candidates recorded by active runs, by outcome (succeeded, failed, stopped: interrupted by a stop).",
    ["outcome"],
)
SUPERVISOR_STOPS = Counter("automl_supervisor_actions_total", "Runs the supervisor stopped or ended.", ["reason"])
REASK_SECONDS = 10.0  # a stop already asked for is asked again only after this long
DISPATCH_ATTEMPTS = 2  # runners behind one name answer in turn: a busy one is not every one
NO_CAPACITY = (errors.ResourceExhausted, errors.Unavailable, errors.DeadlineExceeded)
END_CHECKS = 10  # of an ended run's log, lost_after apart, until it says the run ended


def seconds_since(ts: timestamp_pb2.Timestamp, now: dt.datetime) -> float:
    return (now - ts.ToDatetime(dt.UTC)).total_seconds()


class Supervisor:
    def __init__(self, backends: Backends, control: RunControl, settings: Settings) -> None:
        self.backends = backends
        self.control = control
        self.interval = settings.supervisor_interval_seconds
        self.lost_after = settings.runner_lost_seconds
        self.max_takeovers = settings.run_max_takeovers
        self._asked: dict[str, float] = {}
        self._positions: dict[str, int] = {}
        self._dispatching: asyncio.Task[None] | None = None
        self._trainings_due = 0.0
        self._counts: dict[str, tuple[int, int, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._held: dict[str, tuple[str, c.RunState]] = {}
        """Runs seen RUNNING or STOPPING in the last round: name -> (tenant, state)."""
        self._ended: dict[str, tuple[str, c.RunState, float, int]] = {}
        """Runs gone from the active ones: name -> (tenant, last state seen, next check, checks made)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="supervisor")

    async def stop(self) -> None:
        for task in (self._task, self._dispatching):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self) -> None:
        failing = False
        while True:
            try:
                await self.round()
                if failing:
                    log.info("supervisor reaches storage again")
                failing = False
            except errors.AutoMLError as exc:
                if not failing:  # one line per outage, not one per round
                    log.error("supervisor cannot read runs", extra={"error": status.code_of(exc).name})
                failing = True
            except Exception:
                log.exception("supervisor round failed")
            await asyncio.sleep(self.interval)

    async def round(self) -> None:
        """Check every active run once."""
        records = []
        for state in ACTIVE_STATES:
            found = await self._records(state)
            ACTIVE_RUNS.labels(c.RunState.Name(state).removeprefix("RUN_STATE_").lower()).set(len(found))
            records += found
        now = dt.datetime.now(dt.UTC)
        seen = set()
        for record in records:
            seen.add(record.run.name)
            self._count(record.run)
            try:
                await self.check(record, now)
            except errors.AutoMLError as exc:
                log.warning("cannot supervise run", extra={"run": record.run.name, "error": status.code_of(exc).name})
        for name in set(self._counts) - seen:
            self._counts.pop(name, None)
            self._asked.pop(name, None)
        for name in set(self._held) - seen:
            self._ended[name] = (*self._held[name], time.monotonic() + self.lost_after, 0)
        self._held = {
            r.run.name: (r.tenant, r.run.state)
            for r in records
            if r.run.state in (c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING)
        }
        await self.tell_missing_ends()
        queued = [r for r in records if r.run.state == c.RUN_STATE_QUEUED]
        await self._tell_positions(queued)
        if queued and (self._dispatching is None or self._dispatching.done()):
            # Apart from the checks: a runner preparing a run's data takes seconds.
            self._dispatching = asyncio.create_task(self.dispatch(queued), name="dispatch")
        if time.monotonic() >= self._trainings_due:  # a query of every tenant: a few times per lost_after
            self._trainings_due = time.monotonic() + self.lost_after / 5
            await self.end_lost_trainings(now)

    async def tell_missing_ends(self) -> None:
        """Publish the final events of runs that ended lost_after ago or more
        with no RunFinished last in their log (see the module's docstring);
        checked again every lost_after, END_CHECKS times at most, until the
        log says it (a notifier away costs a Publish its events)."""
        for name, (tenant, previous, due, checks) in list(self._ended.items()):
            if time.monotonic() < due:
                continue
            self._ended.pop(name)
            try:
                run = await self.backends.storage.GetRun(run_pb2.GetRunRequest(name=name), metadata=as_tenant(tenant))
                if not is_terminal(run.state) or await self._end_told(tenant, run):
                    continue
                log.warning("run ended untold: the supervisor tells its end", extra={"run": name})
                await self.control.publish(tenant, final_events(run, previous, run.status_message))
                SUPERVISOR_STOPS.labels("end_told").inc()
            except errors.NotFound:
                continue  # deleted with its experiment since: nothing to tell
            except errors.AutoMLError as exc:
                log.warning("cannot check a run's end", extra={"run": name, "error": status.code_of(exc).name})
            if checks + 1 < END_CHECKS:
                self._ended[name] = (tenant, previous, time.monotonic() + self.lost_after, checks + 1)

    async def _end_told(self, tenant: str, run: run_pb2.Run) -> bool:
        """Whether the run's last event is its RunFinished."""
        last = await self.backends.storage.ListEvents(
            storage_service_pb2.ListEventsRequest(run=run.name, after_sequence=max(run.last_sequence - 1, 0)),
            metadata=as_tenant(tenant),
        )
        return bool(last.events) and last.events[-1].type == event_pb2.EVENT_TYPE_RUN_FINISHED

    async def dispatch(self, queued: list[storage_service_pb2.RunRecord]) -> None:
        """Hand queued runs to runners in the queue's order, until none has capacity."""
        for record in sorted(queued, key=lambda r: r.run.queue_position or 2**31):
            request = runner_service_pb2.ExecuteRunRequest(name=record.run.name)
            for attempt in range(DISPATCH_ATTEMPTS):
                try:
                    run = await self.backends.runner.ExecuteRun(request, metadata=as_tenant(record.tenant))
                except NO_CAPACITY:
                    if attempt + 1 < DISPATCH_ATTEMPTS:
                        continue
                    return  # the head waits: runs start in the queue's order
                except (errors.FailedPrecondition, errors.InvalidArgument):
                    break  # claimed or ended meanwhile, or refused (then FAILED): the next one
                except errors.AutoMLError as exc:
                    why = status.code_of(exc).name
                    log.warning("cannot start a queued run", extra={"run": request.name, "error": why})
                    return
                log.info("queued run started", extra={"run": run.name, "runner": run.runner_id})
                SUPERVISOR_STOPS.labels("dispatched").inc()
                break

    async def _tell_positions(self, queued: list[storage_service_pb2.RunRecord]) -> None:
        """Watchers of a queued run hear when it moves up."""
        positions = {r.run.name: r.run.queue_position for r in queued}
        for record in queued:
            before = self._positions.get(record.run.name)
            if before is not None and before != record.run.queue_position:
                moved = event_pb2.RunQueued(
                    position=record.run.queue_position,
                    takeovers=record.run.takeovers,
                    message=record.run.status_message,
                )
                await self.control.publish(record.tenant, [event(record.run, run_queued=moved)])
        self._positions = positions

    async def end_lost_trainings(self, now: dt.datetime) -> None:
        """Trainings whose runner gave no sign of life for lost_after end FAILED."""
        since = now - dt.timedelta(seconds=self.lost_after)
        request = storage_service_pb2.FailLostTrainingsRequest(
            error_message=(
                f"the runner training it gave no sign of life for {self.lost_after:g} s (it stopped or was lost): "
                "train the model again"
            )
        )
        request.silent_since.FromDatetime(since)
        reply = await self.backends.storage.FailLostTrainings(request, metadata=self.backends.as_supervisor())
        for record in reply.records:
            model = record.trained_model
            log.warning("training lost", extra={"model": model.name})
            SUPERVISOR_STOPS.labels("training_lost").inc()
            trained = event_pb2.ModelTrained(
                trained_model=model.name,
                model_result=model.model_result,
                state=model_pb2.TrainedModel.STATE_FAILED,
                error_message=model.error_message,
            )
            told = event_pb2.Event(id=new_event_id(), run=model.run, experiment=model.experiment, model_trained=trained)
            told.create_time.GetCurrentTime()
            await self.control.publish(record.tenant, [told])

    async def _records(self, state: c.RunState) -> list[storage_service_pb2.RunRecord]:
        out: list[storage_service_pb2.RunRecord] = []
        token = ""
        while True:
            page = await self.backends.storage.ListRunRecords(
                storage_service_pb2.ListRunRecordsRequest(
                    page_size=1000, page_token=token, filter=f"state={c.RunState.Name(state)}"
                ),
                metadata=self.backends.as_supervisor(),
            )
            out += page.records
            token = page.next_page_token
            if not token:
                return out

    def _count(self, run: run_pb2.Run) -> None:
        counts = (run.models_evaluated, run.models_failed, run.models_stopped)
        before = self._counts.get(run.name)
        if before is not None:
            for outcome, now, then in zip(("succeeded", "failed", "stopped"), counts, before, strict=True):
                MODELS_EVALUATED.labels(outcome).inc(max(0, now - then))
        self._counts[run.name] = counts

    async def check(self, record: storage_service_pb2.RunRecord, now: dt.datetime) -> None:
        run, tenant = record.run, record.tenant
        if run.state == c.RUN_STATE_QUEUED:
            return  # no runner holds it, and time queued does not count: dispatch() starts it
        if run.state == c.RUN_STATE_PENDING:
            waited = seconds_since(run.create_time, now)
            if waited > self.lost_after:  # the gateway that created it died before a runner took it
                await self._queue_or_fail(tenant, run, f"no runner took the run in {waited:.0f} s")
            return
        beat = run.heartbeat_time if run.HasField("heartbeat_time") else run.start_time
        silent = seconds_since(beat, now)
        if silent > self.lost_after:
            await self._runner_lost(tenant, run, silent)
            return
        if run.state != c.RUN_STATE_RUNNING:
            return
        limits = Limits.of(run.stop_conditions, default_time_limit=1.0)
        # Candidates interrupted by a stop (models_stopped) are neither done nor failed.
        progress = Progress(
            done=run.models_evaluated + run.models_failed,
            evaluated=run.models_evaluated,
            failed=run.models_failed,
            best_score=run.best_score if run.HasField("best_score") else None,
            best_result=run.best_model_result,
            since_improvement=record.models_since_best,
        )
        reached = limit_reached(limits, run.primary_metric, progress, search_seconds(run, now.timestamp()))
        if reached is None:
            return
        asked = self._asked.get(run.name)
        if asked is not None and time.monotonic() - asked < REASK_SECONDS:
            return
        self._asked[run.name] = time.monotonic()
        reason, message = reached
        log.info("stop condition reached", extra={"run": run.name, "reason": c.StopReason.Name(reason)})
        SUPERVISOR_STOPS.labels(c.StopReason.Name(reason).removeprefix("STOP_REASON_").lower()).inc()
        await self.control.stop(tenant, run, reason, message)

    async def _queue_or_fail(self, tenant: str, run: run_pb2.Run, why: str) -> None:
        try:
            if await self.control.enqueue(tenant, run, why, if_full=c.RUN_STATE_FAILED):
                SUPERVISOR_STOPS.labels("never_started").inc()
        except errors.ResourceExhausted:
            pass  # full: the run is FAILED, saying why

    async def _runner_lost(self, tenant: str, run: run_pb2.Run, silent: float) -> None:
        """A RUNNING run is taken over (or FAILED past the takeovers allowed); a
        STOPPING one ends as its stop says, with every result stored."""
        done = run.models_evaluated + run.models_failed + run.models_stopped
        lost = (
            f"runner {run.runner_id or '(unknown)'} sent no heartbeat for {silent:.0f} s; "
            f"the {done} results stored are kept"
        )
        if run.state == c.RUN_STATE_RUNNING and run.takeovers < self.max_takeovers:
            taken = run.takeovers + 1
            why = f"{lost}; queued for takeover {taken} of {self.max_takeovers}"
            if await self.control.take_over(tenant, run, why):
                SUPERVISOR_STOPS.labels("taken_over").inc()
            return
        if run.state == c.RUN_STATE_STOPPING:
            reason = run.stop_reason or c.STOP_REASON_USER
            state, message = final_state(reason, done), f"{run.status_message} ({lost})"
        else:
            reason, state = c.STOP_REASON_RUNNER_LOST, c.RUN_STATE_FAILED
            message = f"{lost}; taken over {run.takeovers} times already (AUTOML_RUN_MAX_TAKEOVERS)"
        ended = await self.control.end(
            tenant,
            run,
            state,
            reason,
            message,
            expected=[c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING],
        )
        if ended:
            SUPERVISOR_STOPS.labels("runner_lost").inc()
