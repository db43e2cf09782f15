"""Candidate evaluation on a Dask cluster (`AUTOML_DASK_SCHEDULER`), with the
local pool's interface (services.runner.workers.Pool).

Each candidate is one Dask task. The task does not evaluate the candidate in
the Dask worker's own thread (a thread cannot be killed): it forks a worker
process there, exactly as the local pool does, so the per-model time limit,
the memory guard and stops still kill what overruns. The run's data travels
once to every Dask worker (scattered, broadcast); a stop is a Dask Event the
tasks watch. A task returns the worker's Evaluation whole, out-of-fold
predictions included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any

from services.runner.workers import Evaluation, Outcome, Worker

log = logging.getLogger("automl.runner.dask")

WATCH_SECONDS = 0.25
_data_files: dict[str, str] = {}  # on a Dask worker: data digest -> pickle file written there


class DaskPool:
    """A run's candidates on a Dask cluster, at most `size` at once."""

    def __init__(self, address: str, size: int, data_path: str, setup: dict[str, Any]) -> None:
        self.address = address
        self.size = size
        self.data_path = data_path
        self.setup = setup
        self.stop_name = f"automl-stop-{uuid.uuid4().hex}"
        self.client: Any = None
        self.data: Any = None
        self.busy: set[Any] = set()
        self._pending: set[asyncio.Future[Any]] = set()  # stop and close calls under way (kept from the GC)

    async def start(self) -> None:
        from distributed import Client

        self.client = await Client(  # type: ignore[no-untyped-call]  # distributed's Client is unannotated
            self.address, asynchronous=True, timeout="30s"
        )
        payload = Path(self.data_path).read_bytes()
        self.data = await self.client.scatter(payload, broadcast=True, hash=False)
        self.digest = hashlib.sha256(payload).hexdigest()

    async def evaluate(
        self, job_id: str, job_param: dict[str, Any], time_limit: float, memory_limit: int
    ) -> Evaluation:
        future = self.client.submit(
            evaluate_task,
            self.data,
            self.digest,
            self.setup,
            job_id,
            job_param,
            time_limit,
            memory_limit,
            self.stop_name,
            pure=False,
        )
        self.busy.add(future)
        try:
            evaluation: Evaluation = await future  # the task's return value (evaluate_task)
            return evaluation
        except Exception as exc:  # noqa: BLE001 - a lost Dask worker fails the candidate, not the run
            return Evaluation(job_id, Outcome.FAILED, error=f"the Dask task failed: {type(exc).__name__}: {exc}")
        finally:
            self.busy.discard(future)

    def interrupt(self) -> None:
        """Tell the tasks under way to kill their worker processes."""
        if self.client is not None and self.busy:
            from distributed import Event

            stop = Event(  # type: ignore[no-untyped-call]  # distributed's Event is unannotated
                self.stop_name, client=self.client
            )
            self._pending.add(asyncio.ensure_future(stop.set()))  # type: ignore[no-untyped-call]  # Event.set is unannotated

    def close(self) -> None:
        self.interrupt()
        if self.client is not None:
            self._pending.add(asyncio.ensure_future(self._close()))

    async def _close(self) -> None:
        await asyncio.sleep(WATCH_SECONDS * 2)  # let the stop reach the tasks first
        with contextlib.suppress(Exception):
            await self.client.close()


def evaluate_task(
    data: bytes,
    digest: str,
    setup: dict[str, Any],
    job_id: str,
    job_param: dict[str, Any],
    time_limit: float,
    memory_limit: int,
    stop_name: str,
) -> Evaluation:
    """Runs on a Dask worker: one candidate in a killable process of its own."""
    import multiprocessing

    from distributed import Event

    # Dask's nanny starts its workers as daemonic processes (so that they die
    # with it), and multiprocessing refuses children to a daemonic process.
    # The candidate processes started here are killed by this task, and end
    # with their pipe if the worker dies: lift the flag for them.
    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]  # private, untyped
    if digest not in _data_files:
        with tempfile.NamedTemporaryFile(prefix="automl-data-", suffix=".pkl", delete=False) as f:
            f.write(data)
        _data_files[digest] = f.name
    stop = Event(stop_name)  # type: ignore[no-untyped-call]  # distributed's Event is unannotated

    async def one() -> Evaluation:
        worker = Worker(_data_files[digest], setup)
        try:
            await worker.ready()
            evaluation = asyncio.ensure_future(worker.evaluate(job_id, job_param, time_limit, memory_limit))
            while not evaluation.done():
                await asyncio.wait({evaluation}, timeout=WATCH_SECONDS)
                if not evaluation.done() and await asyncio.to_thread(stop.is_set):
                    worker.interrupt()
            return evaluation.result()
        finally:
            worker.close()

    return asyncio.run(one())
