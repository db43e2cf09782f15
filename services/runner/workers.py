"""Worker processes the runner can kill: the per-candidate time limit, the
memory guard and a run's stop are enforced by killing a worker, never by
asking it.

Workers are forked from a fork server that has preloaded aikit (a fork of
the gRPC process itself would not be safe), so a fresh worker costs a fork
and the loading of its run's data, not an aikit import.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger("automl.runner.workers")

POLL_SECONDS = 0.1
START_TIMEOUT_SECONDS = 120.0
INTERRUPTED = "the run stopped while this candidate was evaluated"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_context: Any = None


def context() -> Any:
    """The fork server context, started once per process with aikit preloaded."""
    global _context
    if _context is None:
        # Inherited by the fork server and so by every worker: numerical
        # libraries read these when they load.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["services.runner.worker"])
        _context = ctx
    return _context


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    OUT_OF_MEMORY = "out_of_memory"
    INTERRUPTED = "interrupted"


@dataclass
class Evaluation:
    """What became of one candidate."""

    job_id: str
    outcome: Outcome
    rows: list[dict[str, Any]] | None = None
    error: str = ""
    seconds: float = 0.0
    predictions: npt.NDArray[np.float32] | None = None
    """Out-of-fold predictions of a candidate that ran every fold on all the
    rows (float32; worker.Scored says their shape and order), else None."""


class WorkerError(RuntimeError):
    """A worker could not start (its data could not be loaded)."""


def resident_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc); 0 when unknown."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class Worker:
    """One worker process and its pipe."""

    def __init__(self, data_path: str, setup: dict[str, Any]) -> None:
        from services.runner import worker

        ctx = context()
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=worker.main, args=(child, data_path, setup), daemon=True)
        self.process.start()
        child.close()
        self._interrupt: Outcome | None = None

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    async def ready(self) -> None:
        try:
            message = await asyncio.wait_for(self._receive(), START_TIMEOUT_SECONDS)
        except (EOFError, OSError, TimeoutError):
            self.kill()
            raise WorkerError(f"a worker process did not start (exit code {self.process.exitcode})") from None
        if message[0] != "ready":
            raise WorkerError(f"unexpected first message from a worker: {message[0]}")

    async def _receive(self) -> Any:
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        fd = self.conn.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        return self.conn.recv()  # EOFError when the process died

    async def evaluate(
        self, job_id: str, job_param: dict[str, Any], time_limit: float, memory_limit: int
    ) -> Evaluation:
        """Run one candidate; kill the worker past the time or memory limit."""
        started = time.monotonic()
        self.conn.send((job_id, job_param))
        receiving = asyncio.ensure_future(self._receive())
        try:
            while True:
                done, _ = await asyncio.wait({receiving}, timeout=POLL_SECONDS)
                elapsed = time.monotonic() - started
                if done:
                    return self._result(job_id, receiving, elapsed)
                if self._interrupt is not None:
                    return Evaluation(job_id, self._interrupt, error=INTERRUPTED, seconds=elapsed)
                if elapsed > time_limit:
                    self.kill()
                    return Evaluation(
                        job_id,
                        Outcome.TIMED_OUT,
                        error=f"per-model time limit of {time_limit:g} s reached: worker killed after {elapsed:.2f} s",
                        seconds=elapsed,
                    )
                if memory_limit and (used := resident_bytes(self.pid)) > memory_limit:
                    self.kill()
                    return Evaluation(
                        job_id,
                        Outcome.OUT_OF_MEMORY,
                        error=f"worker used {used / 2**20:.0f} MiB, over the limit of {memory_limit / 2**20:.0f} MiB",
                        seconds=elapsed,
                    )
        finally:
            receiving.cancel()

    def _result(self, job_id: str, receiving: asyncio.Future[Any], elapsed: float) -> Evaluation:
        try:
            kind, _, payload = receiving.result()
        except (EOFError, OSError):
            if self._interrupt is not None:
                return Evaluation(job_id, self._interrupt, error=INTERRUPTED, seconds=elapsed)
            self.process.join(1)
            code = self.process.exitcode
            cause = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return Evaluation(job_id, Outcome.FAILED, error=f"the worker process died ({cause})", seconds=elapsed)
        if kind == "ok":
            return Evaluation(
                job_id,
                Outcome.SUCCEEDED,
                rows=payload["rows"],
                predictions=payload["predictions"],
                seconds=elapsed,
            )
        return Evaluation(job_id, Outcome.FAILED, error=payload, seconds=elapsed)

    def interrupt(self) -> None:
        """Kill the worker because its run stops; its candidate ends INTERRUPTED."""
        self._interrupt = Outcome.INTERRUPTED
        self._signal()

    @property
    def alive(self) -> bool:
        return self.process.is_alive() and self._interrupt is None

    def _signal(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        self._signal()
        self.process.join(5)
        self.conn.close()

    def close(self) -> None:
        """Ask an idle worker to exit; kill it if it does not."""
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(2)
        self.kill()


class Pool:
    """A run's workers: at most `size` at once, each replaced after it is
    killed. Every worker loads the same data file."""

    def __init__(self, size: int, data_path: str, setup: dict[str, Any]) -> None:
        self.size = size
        self.data_path = data_path
        self.setup = setup
        self.idle: list[Worker] = []
        self.busy: set[Worker] = set()

    async def start(self) -> None:
        """Start every worker; WorkerError when they cannot load the data."""
        workers = [Worker(self.data_path, self.setup) for _ in range(self.size)]
        try:
            await asyncio.gather(*(w.ready() for w in workers))
        except WorkerError:
            for w in workers:
                w.kill()
            raise
        self.idle = workers

    async def evaluate(
        self, job_id: str, job_param: dict[str, Any], time_limit: float, memory_limit: int
    ) -> Evaluation:
        worker = self.idle.pop() if self.idle else None
        if worker is None:
            worker = Worker(self.data_path, self.setup)
            await worker.ready()
        self.busy.add(worker)
        try:
            result = await worker.evaluate(job_id, job_param, time_limit, memory_limit)
        finally:
            self.busy.discard(worker)
        if worker.alive:
            self.idle.append(worker)
        else:
            worker.kill()
        return result

    def interrupt(self) -> None:
        """Kill the workers under way (their candidates end INTERRUPTED)."""
        for worker in list(self.busy):
            worker.interrupt()

    def close(self) -> None:
        for worker in self.idle:
            worker.close()
        self.idle = []
        self.interrupt()
