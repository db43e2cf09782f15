"""A trained model held by a worker process for Predict: the file is checked
(its seal) and unpickled there, never in the runner's process, and every
call runs under the worker's time limit and memory guard. The runner keeps
only what turning rows into features needs (names, types, classes, CSV
options)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pandas as pd

from automl.common import errors
from automl.v1 import model_pb2
from services.runner import predicting
from services.runner.workers import Outcome, Worker


class Served:
    """One model in its own worker process; calls are answered one at a time."""

    def __init__(self, name: str, time_limit: float, memory_limit: int) -> None:
        self.name = name
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self.worker = Worker("", {"mode": "serve"})
        self.lock = asyncio.Lock()
        self.meta: predicting.Loaded | None = None
        self.sha256 = ""
        """The file's, as storage recorded it."""
        self.checked = 0.0
        """When (time.monotonic) storage last said this is the model to serve for its name."""

    @classmethod
    async def load(cls, name: str, path: Path, key: bytes, time_limit: float, memory_limit: int) -> Served:
        """The model of a sealed file, loaded in a new worker; FailedPrecondition
        when the seal does not check out."""
        served = cls(name, time_limit, memory_limit)
        try:
            await served.worker.ready()
            answer = await served._call({"op": "load", "path": str(path), "key": key}, "load")
            served.meta = predicting.Loaded.of({"model": None, **answer["bundle"]})
        except BaseException:
            served.close()
            raise
        return served

    @property
    def loaded(self) -> predicting.Loaded:
        assert self.meta is not None
        return self.meta

    @property
    def alive(self) -> bool:
        return self.worker.alive

    async def predict(self, X: pd.DataFrame | predicting.Columns) -> list[model_pb2.Prediction]:
        """Columns travel as plain lists and are a DataFrame again in the worker."""
        answer = await self._call({"op": "predict", "X": X}, "predict these rows")
        return predicting.answers(self.loaded.classification, answer["predicted"], answer["probabilities"])

    async def _call(self, job: dict[str, Any], doing: str) -> dict[str, Any]:
        async with self.lock:
            done = await self.worker.evaluate(self.name, job, self.time_limit, self.memory_limit)
        if done.outcome == Outcome.OUT_OF_MEMORY:
            raise errors.ResourceExhausted(f"{self.name} could not {doing}: {done.error}; send fewer rows per call")
        if done.outcome == Outcome.TIMED_OUT:
            raise errors.ResourceExhausted(f"{self.name} could not {doing}: {done.error}; send fewer rows per call")
        if done.outcome != Outcome.SUCCEEDED or done.rows is None:
            raise errors.FailedPrecondition(f"{self.name} could not {doing}: {done.error}")
        answer = cast("dict[str, Any]", done.rows)  # a serve job's answer, not a score table
        if "refused" in answer:
            raise errors.FailedPrecondition(answer["refused"])
        return answer

    def close(self) -> None:
        self.worker.close()
