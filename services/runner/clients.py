"""The runner's calls to storage and the notifier, for one tenant: every call
carries the tenant explicitly (background work outlives the call that
started it) and the channel's deadline."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import field_mask_pb2

from automl.common import context, errors
from automl.v1 import (
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    notifier_service_pb2,
    notifier_service_pb2_grpc,
    run_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from services.runner.execution import RunGone, run_event

log = logging.getLogger("automl.runner.clients")

CHUNK = 1024 * 1024
PREDICTIONS_KIND = "predictions/npz"
RETRIES = 5
GONE = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


class Services:
    """Storage and notifier, as this tenant sees them."""

    def __init__(self, storage: grpc.aio.Channel, notifier: grpc.aio.Channel, tenant: str) -> None:
        self.storage = storage_service_pb2_grpc.StorageStub(storage)
        self.notifier = notifier_service_pb2_grpc.NotifierStub(notifier)
        self.tenant = tenant
        self.metadata = [(context.TENANT_KEY, tenant)] if tenant else []

    async def get_run(self, name: str) -> run_pb2.Run:
        return await self.storage.GetRun(run_pb2.GetRunRequest(name=name), metadata=self.metadata)

    async def get_experiment(self, name: str) -> experiment_pb2.Experiment:
        return await self.storage.GetExperiment(experiment_pb2.GetExperimentRequest(name=name), metadata=self.metadata)

    async def get_dataset(self, name: str) -> dataset_pb2.Dataset:
        return await self.storage.GetDataset(dataset_pb2.GetDatasetRequest(name=name), metadata=self.metadata)

    async def download(self, name: str, path: Path) -> int:
        """Stream a dataset's bytes into a file; returns the size."""
        size = 0
        with path.open("wb") as out:
            call = self.storage.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name=name), metadata=self.metadata)
            async for message in call:
                out.write(message.chunk)
                size += len(message.chunk)
        return size

    async def write_artifact(self, kind: str, payload: bytes | Path) -> storage_service_pb2.Artifact:
        """Store bytes, or a file streamed in chunks, as an artifact."""

        async def requests() -> AsyncIterator[storage_service_pb2.WriteArtifactRequest]:
            yield storage_service_pb2.WriteArtifactRequest(header=storage_service_pb2.WriteArtifactHeader(kind=kind))
            if isinstance(payload, bytes):
                for start in range(0, len(payload), CHUNK):
                    yield storage_service_pb2.WriteArtifactRequest(chunk=payload[start : start + CHUNK])
                return
            with payload.open("rb") as source:
                while chunk := source.read(CHUNK):
                    yield storage_service_pb2.WriteArtifactRequest(chunk=chunk)

        return await self.storage.WriteArtifact(requests(), metadata=self.metadata, timeout=600)

    async def model_results(self, run: str) -> list[run_pb2.ModelResult]:
        """Every stored result of a run, in evaluation order, FULL view."""
        out: list[run_pb2.ModelResult] = []
        token = ""
        while True:
            request = run_pb2.ListModelResultsRequest(
                run=run, page_size=1000, page_token=token, view=run_pb2.MODEL_RESULT_VIEW_FULL
            )
            page = await self.storage.ListModelResults(request, metadata=self.metadata)
            out += page.model_results
            token = page.next_page_token
            if not token:
                return out

    async def get_model_result(self, name: str) -> run_pb2.ModelResult:
        return await self.storage.GetModelResult(
            run_pb2.GetModelResultRequest(name=name, view=run_pb2.MODEL_RESULT_VIEW_FULL), metadata=self.metadata
        )

    async def get_trained_model(self, name: str) -> model_pb2.TrainedModel:
        return await self.storage.GetTrainedModel(model_pb2.GetTrainedModelRequest(name=name), metadata=self.metadata)

    async def update_trained_model(self, model: model_pb2.TrainedModel, paths: list[str]) -> model_pb2.TrainedModel:
        request = storage_service_pb2.UpdateTrainedModelRequest(
            trained_model=model, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        return await self.retry(lambda: self.storage.UpdateTrainedModel(request, metadata=self.metadata))

    async def run_started(self, run: str) -> event_pb2.RunStarted:
        """The RUN_STARTED event of a run: where its split is recorded."""
        reply = await self.storage.ListEvents(
            storage_service_pb2.ListEventsRequest(run=run, event_types=[event_pb2.EVENT_TYPE_RUN_STARTED], page_size=1),
            metadata=self.metadata,
        )
        if not reply.events:
            raise errors.FailedPrecondition(f"{run} has no RUN_STARTED event: its split was never recorded")
        return reply.events[0].run_started

    async def read_artifact(self, name: str, path: Path, expected_sha256: str = "") -> storage_service_pb2.Artifact:
        """Stream an artifact into a file, hashing it on the way; DataLoss when
        the bytes are not the ones storage recorded (or `expected_sha256`)."""
        digest = hashlib.sha256()
        artifact = None
        call = self.storage.ReadArtifact(storage_service_pb2.ReadArtifactRequest(name=name), metadata=self.metadata)
        with path.open("wb") as out:
            async for message in call:
                if message.WhichOneof("content") == "artifact":
                    artifact = message.artifact
                else:
                    digest.update(message.chunk)
                    out.write(message.chunk)
        if artifact is None:
            raise errors.DataLoss(f"{name}: storage sent no description of the artifact")
        found = digest.hexdigest()
        for recorded in filter(None, (artifact.sha256, expected_sha256)):
            if found != recorded:
                path.unlink(missing_ok=True)
                raise errors.DataLoss(
                    f"{name} has sha256 {found}, not the recorded {recorded}: it was altered, refusing to load it"
                )
        return artifact

    async def set_state(
        self,
        name: str,
        expected: Sequence[int],
        state: int,
        reason: int = 0,
        message: str = "",
        runner_id: str = "",
        add_notes: Sequence[str] = (),
    ) -> run_pb2.Run:
        request = storage_service_pb2.UpdateRunStateRequest(
            name=name,
            expected_states=list(expected),
            state=state,
            stop_reason=reason,
            status_message=message,
            runner_id=runner_id,
            add_notes=list(add_notes),
        )
        return await self.retry(lambda: self.storage.UpdateRunState(request, metadata=self.metadata))

    async def publish(self, events: list[event_pb2.Event]) -> None:
        """Publish events; they are a view of what storage holds, so a notifier
        that stays away costs watchers their live feed, not the results."""
        request = notifier_service_pb2.PublishRequest(events=events)
        try:
            await self.retry(lambda: self.notifier.Publish(request, metadata=self.metadata))
        except grpc.aio.AioRpcError as exc:
            log.error("events not published", extra={"count": len(events), "error": exc.code().name})

    async def retry(self, call: object) -> object:
        delay = 0.25
        for attempt in range(RETRIES):
            try:
                return await call()  # type: ignore[operator]
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNAVAILABLE or attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")


class GrpcRecorder:
    """execution.RunRecorder over storage and the notifier."""

    def __init__(self, services: Services, run: str, runner_id: str) -> None:
        self.services = services
        self.run = run
        self.runner_id = runner_id

    async def set_state(self, expected: Sequence[int], state: int, reason: int = 0, message: str = "") -> run_pb2.Run:
        try:
            return await self.services.set_state(self.run, expected, state, reason, message)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in GONE:
                raise RunGone(exc.details()) from None
            raise

    async def heartbeat(self, add_notes: Sequence[str] = ()) -> run_pb2.Run:
        request = storage_service_pb2.HeartbeatRunRequest(
            name=self.run, runner_id=self.runner_id, add_notes=list(add_notes)
        )
        try:
            return await self.services.storage.HeartbeatRun(request, metadata=self.services.metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in GONE:
                raise RunGone(exc.details()) from None
            raise

    async def store_result(self, result: run_pb2.ModelResult) -> tuple[run_pb2.ModelResult, run_pb2.Run]:
        request = storage_service_pb2.BatchCreateModelResultsRequest(run=self.run, model_results=[result])
        try:
            reply = await self.services.retry(
                lambda: self.services.storage.BatchCreateModelResults(request, metadata=self.services.metadata)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in GONE:
                raise RunGone(exc.details()) from None
            raise
        return reply.model_results[0], reply.run  # type: ignore[attr-defined]

    async def publish(self, events: list[event_pb2.Event]) -> None:
        await self.services.publish(events)

    async def keep_predictions(self, predictions: np.ndarray) -> str:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, predictions=predictions.astype(np.float32))
        artifact = await self.services.write_artifact(PREDICTIONS_KIND, buffer.getvalue())
        return artifact.name

    async def add_notes(self, notes: list[str]) -> None:
        """Notes on the run (through its heartbeat), and as events for its watchers."""
        run = await self.heartbeat(notes)
        await self.publish([run_event(self.run, run.experiment, run_note=event_pb2.RunNote(message=n)) for n in notes])
