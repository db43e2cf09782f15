"""The runner: takes PENDING and QUEUED runs, checks that their data can be
searched, claims them and executes them in the background, within its worker
capacity. A QUEUED run that had started before (its runner was lost, or shut
down) is resumed from its stored results.

A run is checked before it is claimed, so a run whose data cannot be searched
goes from PENDING straight to FAILED (its ExecuteRun answers INVALID_ARGUMENT)
and is never left PENDING; the claim is storage's compare-and-set, so two
runners never execute the same run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import pickle
import shutil
import socket
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import timestamp_pb2

from automl.common import errors, identity, runs, status
from automl.common.channels import connect
from automl.common.errors import FieldViolation, InvalidArgument
from automl.common.settings import Settings
from automl.common.stopping import Limits, search_seconds
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, run_pb2, runner_service_pb2
from services.runner import aikit_compat, problem, scoring, workers
from services.runner.candidates import Candidates
from services.runner.clients import GrpcRecorder, Services
from services.runner.dask_pool import DaskPool
from services.runner.execution import ENSEMBLE_CANDIDATES, Execution, RunGone, SearchData
from services.runner.models import Models

log = logging.getLogger("automl.runner")


@dataclass
class Prepared:
    """A run checked and ready to claim."""

    run: run_pb2.Run
    problem: problem.Problem
    candidates: Candidates
    limits: Limits
    scorers: list[scoring.Scorer]
    workers: int
    folder: Path
    split_artifact: str


class Runner:
    """The runner's state: its executions and its capacity."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runner_id = settings.runner_id or f"{socket.gethostname()}-{os.getpid()}"
        self.max_workers = settings.runner_max_workers or os.cpu_count() or 1
        self.folder = settings.data_dir.resolve() / "runner" / self.runner_id
        self.executions: dict[str, Execution] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # Workers claimed per run, from ExecuteRun until the run's pool is closed.
        self.claims: dict[str, int] = {}
        self.models = Models(settings, self.folder)
        self.start_time = timestamp_pb2.Timestamp()
        self.storage: grpc.aio.Channel
        self.notifier: grpc.aio.Channel

    # ------------------------------------------------------------ lifespan

    async def start(self) -> None:
        # Fail at start-up, not mid-run, when aikit cannot be patched.
        aikit_compat.load()
        self._sweep()
        self.folder.mkdir(parents=True, exist_ok=True)
        # The fork server imports aikit once (seconds): do it now, not on the first run.
        from multiprocessing import forkserver

        workers.context()
        await asyncio.to_thread(forkserver.ensure_running)
        credentials = identity.Credentials.of(self.settings, identity.RUNNER)
        self.storage = connect(self.settings.storage_address, self.settings, credentials)
        self.notifier = connect(self.settings.notifier_address, self.settings, credentials)
        self.start_time.GetCurrentTime()
        log.info("runner ready", extra={"runner_id": self.runner_id, "max_workers": self.max_workers})

    def _sweep(self) -> None:
        """Remove the working folders of runners of this host that are gone
        (killed before they could clean up), and any of this id."""
        shutil.rmtree(self.folder, ignore_errors=True)
        host = socket.gethostname()
        for folder in self.folder.parent.glob(f"{host}-*"):
            pid = folder.name.removeprefix(f"{host}-")
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(folder, ignore_errors=True)

    async def stop(self) -> None:
        """Shutting down: running runs go back to the queue, with every result
        already stored, for a runner to go on with them; stopping ones end."""
        for execution in list(self.executions.values()):
            if execution.stop is None:
                execution.hand_back(f"runner {self.runner_id} shut down; the run waits for a runner to go on")
            execution.pool.interrupt()
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=self.settings.shutdown_grace_seconds)
        await self.models.close()
        await Services.close_outbox(self.notifier)  # the events left, for at most clients.CLOSE_SECONDS
        await self.storage.close()
        await self.notifier.close()

    # ---------------------------------------------------------------- runs

    @property
    def busy_workers(self) -> int:
        return sum(self.claims.values())

    def give_back(self, name: str) -> None:
        """The run's workers are free again (once; later calls do nothing)."""
        self.claims.pop(name, None)

    def services(self, tenant: str) -> Services:
        return Services(self.storage, self.notifier, tenant)

    async def execute(self, tenant: str, name: str) -> run_pb2.Run:
        """Check, claim and start a PENDING or QUEUED run."""
        services = self.services(tenant)
        run = await services.get_run(name)
        if run.state not in (c.RUN_STATE_PENDING, c.RUN_STATE_QUEUED):
            raise errors.FailedPrecondition(
                f"{name} is {c.RunState.Name(run.state)}, not RUN_STATE_PENDING or RUN_STATE_QUEUED"
            )
        if name in self.executions or name in self.claims:
            raise errors.FailedPrecondition(f"{name} is already executed by this runner")
        wanted = min(run.parallel_workers or self.max_workers, self.max_workers)
        free = self.max_workers - self.busy_workers
        if wanted > free:
            raise errors.ResourceExhausted(
                f"runner {self.runner_id} has {free} of {self.max_workers} workers free; "
                f"{name} needs {wanted}: retry later or on another runner"
            )
        self.claims[name] = wanted
        started = False
        folder = self.folder / name.removeprefix("runs/")
        try:
            try:
                prepared = await self._prepare(services, run, wanted, folder)
            except InvalidArgument as exc:
                await self._refuse(services, run, exc)
                raise
            resumed = run.HasField("start_time")  # it ran before: a takeover, or handed back
            notes = [self._takeover_note(run)] if resumed else prepared.problem.notes
            claimed = await services.set_state(
                name, [run.state], c.RUN_STATE_RUNNING, runner_id=self.runner_id, add_notes=notes
            )
            history = await self._history(services, claimed, prepared) if resumed else None
            self._launch(services, prepared, claimed, run.state, notes, history)
            started = True
            return claimed
        finally:
            if not started:
                self.give_back(name)
                shutil.rmtree(folder, ignore_errors=True)

    def _takeover_note(self, run: run_pb2.Run) -> str:
        done = run.models_evaluated + run.models_failed + run.models_stopped
        used = run.prior_search_time.ToTimedelta().total_seconds()
        budget = run.stop_conditions.max_duration.ToTimedelta().total_seconds()
        of = f" of its {budget:g} s budget" if budget else ""
        return f"runner {self.runner_id} goes on from the {done} results stored ({used:.0f} s{of} used before)"

    async def _history(
        self, services: Services, run: run_pb2.Run, prepared: Prepared
    ) -> tuple[list[run_pb2.ModelResult], dict[str, npt.NDArray[np.float32]]]:
        """A resumed run's stored results, and the stored out-of-fold
        predictions of those the ensemble could use (the best of each sample size)."""
        try:
            results = await services.model_results(run.name)
        except errors.AutoMLError as exc:  # the run goes on from its counts, without its members
            log.warning("stored results not read", extra={"run": run.name, "error": status.code_of(exc).name})
            return [], {}
        sign = prepared.scorers[0].sign
        best: dict[int, list[run_pb2.ModelResult]] = {}
        for result in results:
            if result.predictions_artifact and result.HasField("primary_score"):
                best.setdefault(result.sample_rows, []).append(result)
        predictions = {}
        for group in best.values():
            group.sort(key=lambda r: -sign * r.primary_score)
            for result in group[:ENSEMBLE_CANDIDATES]:
                path = prepared.folder / "predictions.npz"
                try:
                    await services.read_artifact(result.predictions_artifact, path)
                    with np.load(path) as stored:
                        predictions[result.name] = stored["predictions"]
                except (errors.AutoMLError, OSError, KeyError, ValueError) as exc:
                    log.warning("stored predictions not read", extra={"result": result.name, "error": repr(exc)})
                finally:
                    path.unlink(missing_ok=True)
        return results, predictions

    async def _prepare(self, services: Services, run: run_pb2.Run, wanted: int, folder: Path) -> Prepared:
        experiment = await services.get_experiment(run.experiment)
        dataset = await services.get_dataset(experiment.dataset)
        limits = Limits.of(run.stop_conditions, self.settings.runner_model_time_limit_seconds)
        if problems := limits.problems():
            raise InvalidArgument.of([FieldViolation(f, d) for f, d in problems])
        folder.mkdir(parents=True, exist_ok=True)
        csv = folder / "dataset.csv"
        clock = time.perf_counter()
        await services.download(dataset.name, csv)
        downloaded = time.perf_counter() - clock
        data = await asyncio.to_thread(problem.load, csv, dataset, experiment, self.settings.runner_sample_cells)
        csv.unlink()
        read = time.perf_counter() - clock - downloaded
        try:
            scorers = scoring.scorers(data.task, run.primary_metric or experiment.primary_metric)
        except ValueError as exc:
            raise InvalidArgument.field("experiment.primary_metric", str(exc)) from None
        candidates = await asyncio.to_thread(
            Candidates,
            data.X,
            data.y,
            data.task,
            list(experiment.allowed_model_families),
            [s.name for s in scorers],
            data.folds,
            data.seed,
            folder / "aikit",
        )
        with (folder / "data.pkl").open("wb") as f:
            pickle.dump((data.X, data.y), f, protocol=pickle.HIGHEST_PROTOCOL)
        split = json.dumps(data.split_record(dataset, experiment), sort_keys=True).encode()
        artifact = await services.write_artifact("split/json", split)
        log.info(
            "run prepared",
            extra={
                "run": run.name,
                "rows": dataset.row_count,
                "search_rows": len(data.y),
                "download_s": round(downloaded, 2),
                "read_s": round(read, 2),
                "total_s": round(time.perf_counter() - clock, 2),
            },
        )
        return Prepared(run, data, candidates, limits, scorers, wanted, folder, artifact.name)

    async def _refuse(self, services: Services, run: run_pb2.Run, error: InvalidArgument) -> None:
        """The run cannot be searched: PENDING or QUEUED -> FAILED, with the reason."""
        try:
            failed = await services.set_state(
                run.name, [run.state], c.RUN_STATE_FAILED, c.STOP_REASON_ERROR, error.message
            )
        except errors.AutoMLError as exc:
            error_code = status.code_of(exc).name
            log.warning("cannot mark the refused run FAILED", extra={"run": run.name, "error": error_code})
            return
        await services.publish(runs.final_events(failed, run.state, error.message, c.STOP_REASON_ERROR))
        log.info("run refused", extra={"run": run.name, "reason": error.message})

    def _pool(self, size: int, data_path: str, setup: dict[str, object]) -> workers.Pool | DaskPool:
        if self.settings.dask_scheduler:
            return DaskPool(self.settings.dask_scheduler, size, data_path, setup)
        return workers.Pool(size, data_path, setup)

    def _launch(
        self,
        services: Services,
        prepared: Prepared,
        run: run_pb2.Run,
        previous: c.RunState,
        notes: list[str],
        history: tuple[list[run_pb2.ModelResult], dict[str, npt.NDArray[np.float32]]] | None,
    ) -> None:
        setup = {
            "classification": prepared.problem.task == c.TASK_CLASSIFICATION,
            "folds": prepared.problem.folds,
            "seed": prepared.problem.random_state,
            "scorers": [s.name for s in prepared.scorers],
            "nice": self.settings.runner_worker_nice,
        }
        # The budget counts from the claim as storage recorded it, not from now,
        # plus what the runners before used (time queued does not count).
        used = min(search_seconds(run, time.time()), run.prior_search_time.ToTimedelta().total_seconds() + 5.0)
        execution = Execution(
            run=run,
            limits=prepared.limits,
            scorers=prepared.scorers,
            candidates=prepared.candidates,
            pool=self._pool(prepared.workers, str(prepared.folder / "data.pkl"), setup),
            recorder=GrpcRecorder(services, run.name, self.runner_id),
            grace=self.settings.runner_stop_grace_seconds,
            memory_limit=self.settings.runner_worker_memory_mb * 2**20,
            heartbeat_seconds=self.settings.runner_heartbeat_seconds,
            started=time.monotonic() - used,
            workers_freed=functools.partial(self.give_back, run.name),
            data=SearchData(
                y=prepared.problem.y.to_numpy(),
                classification=prepared.problem.task == c.TASK_CLASSIFICATION,
                folds=prepared.problem.folds,
                seed=prepared.problem.random_state,
            ),
        )
        self.executions[run.name] = execution
        started = execution.event(
            run_state_changed=event_pb2.RunStateChanged(previous_state=previous, state=c.RUN_STATE_RUNNING)
        )
        if history is not None:
            execution.resume(*history)
        begun = execution.event(
            run_started=event_pb2.RunStarted(
                runner_id=self.runner_id,
                stop_conditions=run.stop_conditions,
                parallel_workers=prepared.workers,
                primary_metric=run.primary_metric,
                task=prepared.problem.task,
                search_rows=len(prepared.problem.y),
                split_artifact=prepared.split_artifact,
                holdout_rows=prepared.problem.holdout_count,
                feature_columns=list(prepared.problem.columns.values()),
            )
        )

        told = [execution.event(run_note=event_pb2.RunNote(message=note)) for note in notes]
        # A resumed run told its start (its split, its columns) the first time.
        first = [begun] if history is None else []

        async def execute() -> None:
            try:
                await services.publish([started, *first, *told])
                await execution.execute()
            finally:
                self.executions.pop(run.name, None)
                self.tasks.pop(run.name, None)
                self.give_back(run.name)  # when the execution could not begin
                prepared.candidates.close()  # a draw still fitting in its thread then ends quietly
                shutil.rmtree(prepared.folder, ignore_errors=True)

        self.tasks[run.name] = asyncio.create_task(execute(), name=f"execute {run.name}")
        log.info("run started", extra={"run": run.name, "workers": prepared.workers})

    async def stop_execution(self, name: str, reason: c.StopReason, message: str, grace: float | None) -> run_pb2.Run:
        execution = self.executions.get(name)
        if execution is None:
            raise errors.NotFound(f"runner {self.runner_id} does not execute {name}")
        try:
            return await execution.request_stop(reason, message, grace)
        except RunGone as exc:
            raise errors.FailedPrecondition(f"{name} already ended: {exc}") from None

    def status(self) -> runner_service_pb2.RunnerStatus:
        from automl import __version__

        return runner_service_pb2.RunnerStatus(
            runner_id=self.runner_id,
            version=__version__,
            aikit_version=version("aikit"),
            max_workers=self.max_workers,
            busy_workers=self.busy_workers,
            active_runs=[
                runner_service_pb2.ActiveRun(
                    run=name,
                    state=e.run.state,
                    workers=e.pool.size,
                    models_evaluated=e.progress.done,
                )
                for name, e in self.executions.items()
            ],
            executor=self.settings.dask_scheduler or "local",
            start_time=self.start_time,
        )
