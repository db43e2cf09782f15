"""The stop-condition supervisor: every few moments, every active run of every
tenant is checked against its stop conditions and its runner's heartbeat.

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

import grpc
from prometheus_client import Counter, Gauge

from automl.common.settings import Settings
from automl.common.stopping import ACTIVE_STATES, Limits, Progress, limit_reached
from automl.v1 import common_pb2 as c
from automl.v1 import storage_service_pb2
from gateway.backends import Backends
from gateway.control import RunControl

log = logging.getLogger("automl.gateway.supervisor")

ACTIVE_RUNS = Gauge("automl_active_runs", "Runs not yet ended, by state.", ["state"])
MODELS_EVALUATED = Counter(
    "automl_models_evaluated_total",
    "Candidates recorded by active runs, by outcome (succeeded, failed, stopped: interrupted by a stop).",
    ["outcome"],
)
SUPERVISOR_STOPS = Counter("automl_supervisor_actions_total", "Runs the supervisor stopped or ended.", ["reason"])
REASK_SECONDS = 10.0  # a stop already asked for is asked again only after this long


def seconds_since(ts: object, now: dt.datetime) -> float:
    return (now - ts.ToDatetime(dt.UTC)).total_seconds()  # type: ignore[attr-defined]


class Supervisor:
    def __init__(self, backends: Backends, control: RunControl, settings: Settings) -> None:
        self.backends = backends
        self.control = control
        self.interval = settings.supervisor_interval_seconds
        self.lost_after = settings.runner_lost_seconds
        self._asked: dict[str, float] = {}
        self._counts: dict[str, tuple[int, int, int]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="supervisor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        failing = False
        while True:
            try:
                await self.round()
                if failing:
                    log.info("supervisor reaches storage again")
                failing = False
            except grpc.aio.AioRpcError as exc:
                if not failing:  # one line per outage, not one per round
                    log.error("supervisor cannot read runs", extra={"error": exc.code().name})
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
            except grpc.aio.AioRpcError as exc:
                log.warning("cannot supervise run", extra={"run": record.run.name, "error": exc.code().name})
        for name in set(self._counts) - seen:
            self._counts.pop(name, None)
            self._asked.pop(name, None)

    async def _records(self, state: int) -> list[storage_service_pb2.RunRecord]:
        out, token = [], ""
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

    def _count(self, run: object) -> None:
        counts = (run.models_evaluated, run.models_failed, run.models_stopped)  # type: ignore[attr-defined]
        before = self._counts.get(run.name)  # type: ignore[attr-defined]
        if before is not None:
            for outcome, now, then in zip(("succeeded", "failed", "stopped"), counts, before, strict=True):
                MODELS_EVALUATED.labels(outcome).inc(max(0, now - then))
        self._counts[run.name] = counts  # type: ignore[attr-defined]

    async def check(self, record: storage_service_pb2.RunRecord, now: dt.datetime) -> None:
        run, tenant = record.run, record.tenant
        if run.state == c.RUN_STATE_PENDING:
            waited = seconds_since(run.create_time, now)
            if waited > self.lost_after:
                message = f"no runner took the run in {waited:.0f} s"
                if await self.control.end(
                    tenant, run, c.RUN_STATE_FAILED, c.STOP_REASON_ERROR, message, expected=[c.RUN_STATE_PENDING]
                ):
                    SUPERVISOR_STOPS.labels("never_started").inc()
            return
        beat = run.heartbeat_time if run.HasField("heartbeat_time") else run.start_time
        silent = seconds_since(beat, now)
        if silent > self.lost_after:
            kept = run.models_evaluated + run.models_failed + run.models_stopped
            message = (
                f"runner {run.runner_id or '(unknown)'} sent no heartbeat for {silent:.0f} s; "
                f"the {kept} results stored are kept"
            )
            ended = await self.control.end(
                tenant,
                run,
                c.RUN_STATE_FAILED,
                c.STOP_REASON_RUNNER_LOST,
                message,
                expected=[c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING],
            )
            if ended:
                SUPERVISOR_STOPS.labels("runner_lost").inc()
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
        elapsed = seconds_since(run.start_time, now) if run.HasField("start_time") else 0.0
        reached = limit_reached(limits, run.primary_metric, progress, elapsed)
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
