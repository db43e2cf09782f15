"""gRPC face of the storage service: parses names, calls the repository (in a
worker thread: SQLAlchemy and the blob SDKs block) and converts the answers.
No storage logic lives here."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import empty_pb2, json_format
from google.protobuf.message import Message

from automl.common import context, csvformat, errors, metrics
from automl.common.errors import InvalidArgument
from automl.common.events import EVENT_ID_RULE, new_event_id, valid_event_id
from automl.common.names import parse as parse_name
from automl.common.names import parse_optional as optional_name
from automl.common.settings import Settings
from automl.common.streams import drain
from automl.common.tenants import ALL_TENANTS, DEFAULT_TENANT
from automl.v1 import (
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    run_pb2,
    storage_service_pb2_grpc,
)
from automl.v1 import (
    storage_service_pb2 as pb,
)
from services.storage import convert, csvprofile, ingest, repository, validation
from services.storage.answers import Answers, database_version
from services.storage.blobs import CHUNK, BlobStore
from services.storage.repository import DatasetQuota, MetadataStore, Removed

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def tenant() -> str:
    return context.tenant.get() or DEFAULT_TENANT


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def read_by_key(store: MetadataStore, fn: Callable[..., T], *args: Any) -> T:
    """A read of one row by its key: on the event loop where the store says it
    is that cheap (SQLite: the thread hop cost more CPU than the read), in a
    worker thread otherwise (a database server is a network round trip away)."""
    if store.reads_by_key_inline:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def column_dicts(profile: csvprofile.CsvProfile) -> list[dict[str, Any]]:
    out = []
    for col in profile.columns:
        message = dataset_pb2.ColumnProfile(
            name=col.name,
            index=col.index,
            inferred_type=cast(
                common_pb2.ColumnType, common_pb2.ColumnType.Value(f"COLUMN_TYPE_{col.inferred_type.upper()}")
            ),
            missing_count=col.missing_count,
            distinct_count=col.distinct_count,
            distinct_is_estimate=col.distinct_is_estimate,
            top_values=col.top_values,
        )
        for field in ("min", "max", "mean"):
            if getattr(col, field) is not None:
                setattr(message, field, getattr(col, field))
        out.append(convert.to_dict(message))
    return out


class StorageServicer(storage_service_pb2_grpc.StorageServicer):
    """automl.v1.Storage over a MetadataStore and a BlobStore."""

    def __init__(self, store: MetadataStore, blobs: BlobStore, settings: Settings) -> None:
        self.store = store
        self.blobs = blobs
        self.settings = settings
        self.csv_limits = csvprofile.Limits(
            max_columns=settings.csv_max_columns,
            max_line_bytes=settings.csv_max_line_bytes,
            max_field_bytes=settings.csv_max_field_bytes,
        )
        self.dataset_quota = DatasetQuota(settings.tenant_max_datasets, settings.tenant_max_stored_bytes)
        self.answers = Answers(database_version(store.engine))

    # --------------------------------------------------------------- shared

    async def _kept(self, request: Message, load: Callable[[], Awaitable[M]]) -> M:
        """A hot read's answer, kept until the database changes (answers.py)."""
        key = (type(request), tenant(), request.SerializeToString(deterministic=True))
        return await self.answers.read(key, load)

    async def _upload_limit(self, tenant: str) -> ingest.SizeLimit:
        """Refuse at once a tenant already at its dataset quotas; the bytes the
        upload may bring: AUTOML_UPLOAD_MAX_BYTES, or less when the stored-bytes
        quota leaves less. create_dataset checks the quotas again, under the
        tenant's lock (concurrent uploads)."""
        settings, quota = self.settings, self.dataset_quota
        limit = ingest.SizeLimit(
            settings.upload_max_bytes,
            f"the file is larger than {settings.upload_max_bytes:,} bytes, the most AUTOML_UPLOAD_MAX_BYTES allows: "
            "upload a smaller file (a sample, or fewer columns), or ask the operator to raise it",
        )
        if not (quota.max_datasets or quota.max_stored_bytes):
            return limit
        usage = await call(self.store.dataset_usage, tenant)
        repository.check_dataset_quota(usage, 0, quota)
        room = quota.max_stored_bytes - usage.stored_bytes
        if quota.max_stored_bytes and room < limit.max_bytes:
            limit = ingest.SizeLimit(
                max(room, 0),
                f"the tenant's datasets take {usage.stored_bytes:,} bytes of the {quota.max_stored_bytes:,} "
                f"AUTOML_TENANT_MAX_STORED_BYTES allows, and this file is larger than the {max(room, 0):,} left: "
                "delete datasets it no longer needs, or ask the operator to raise it",
                too_large=False,
            )
        return limit

    async def _drain(self, request_iterator: AsyncIterator[Any]) -> None:
        """Read and drop what the client still sends of a refused upload (up to
        AUTOML_UPLOAD_MAX_BYTES): automl.common.streams.drain says why."""
        await drain(request_iterator, self.settings.upload_max_bytes)

    async def _write(self, chunks: AsyncIterator[bytes], **kwargs: Any) -> tuple[repository.StoredContent, Any]:
        writer = ingest.ContentWriter(self.blobs, self.settings.inline_max_bytes)
        return await ingest.write_stream(chunks, writer, **kwargs)

    async def _drop_blobs(self, removed: Removed) -> None:
        for key in removed.blob_keys:
            await call(self.blobs.delete, key)

    async def _stream_content(self, content: Any) -> AsyncIterator[bytes]:
        if content.inline_data is not None:
            for start in range(0, len(content.inline_data), CHUNK):
                yield content.inline_data[start : start + CHUNK]
            return
        chunks = self.blobs.read(content.blob_key)
        try:
            while (chunk := await call(next, chunks, None)) is not None:
                yield chunk
        finally:
            chunks.close()

    # ------------------------------------------------------------- datasets

    async def UploadDataset(
        self,
        request_iterator: AsyncIterator[dataset_pb2.UploadDatasetRequest],
        ctx: grpc.aio.ServicerContext[dataset_pb2.UploadDatasetRequest, dataset_pb2.Dataset],
    ) -> dataset_pb2.Dataset:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("content") != "header":
            raise InvalidArgument.field("header", "the first message of an upload must carry the header")
        header = first.header
        validation.check_display_name(header.display_name, "header.display_name", required=True)
        validation.check_description(header.description, "header.description")
        fmt = csvformat.check(header.csv_options, "header.csv_options")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("content") != "chunk":
                    raise InvalidArgument.field("header", "only the first message may carry a header")
                yield message.chunk

        try:
            content, profile = await self._write(
                chunks(),
                expected_sha256=header.expected_sha256,
                consumer=ingest.profile(fmt, self.csv_limits),
                limit=await self._upload_limit(tenant()),
            )
        except (errors.ResourceExhausted, errors.InvalidArgument):
            await self._drain(request_iterator)  # nothing was kept: the writer is aborted
            raise
        try:
            row, is_new = await call(
                self.store.create_dataset,
                tenant(),
                display_name=header.display_name,
                description=header.description,
                csv_options=convert.to_dict(fmt.options()),
                content=content,
                row_count=profile.row_count,
                columns=column_dicts(profile),
                quota=self.dataset_quota,
            )
        except BaseException:
            if content.blob_key:
                await asyncio.shield(call(self.blobs.delete, content.blob_key))
            raise
        if not is_new and content.blob_key:
            await call(self.blobs.delete, content.blob_key)  # same bytes were stored before
        stored = await call(self.store.content, row.content_sha256)
        return convert.dataset(row, stored)

    async def GetDataset(
        self,
        request: dataset_pb2.GetDatasetRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.GetDatasetRequest, dataset_pb2.Dataset],
    ) -> dataset_pb2.Dataset:
        row = await call(self.store.get_dataset, tenant(), parse_name(request.name, "datasets"))
        return convert.dataset(row, await call(self.store.content, row.content_sha256))

    async def ListDatasets(
        self,
        request: dataset_pb2.ListDatasetsRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.ListDatasetsRequest, dataset_pb2.ListDatasetsResponse],
    ) -> dataset_pb2.ListDatasetsResponse:
        page = await call(self.store.list_datasets, tenant(), request.page_size, request.page_token, request.filter)
        return dataset_pb2.ListDatasetsResponse(
            datasets=[convert.dataset(row) for row in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def DeleteDataset(
        self,
        request: dataset_pb2.DeleteDatasetRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.DeleteDatasetRequest, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        removed = await call(self.store.delete_dataset, tenant(), parse_name(request.name, "datasets"), request.force)
        await self._drop_blobs(removed)
        return empty_pb2.Empty()

    async def PreviewDataset(
        self,
        request: dataset_pb2.PreviewDatasetRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.PreviewDatasetRequest, dataset_pb2.PreviewDatasetResponse],
    ) -> dataset_pb2.PreviewDatasetResponse:
        if not 0 <= request.row_count <= 1000:
            raise InvalidArgument.field("row_count", f"{request.row_count}: use 1 to 1000 (0 for 20)")
        row = await call(self.store.get_dataset, tenant(), parse_name(request.name, "datasets"))
        content = await call(self.store.content, row.content_sha256)
        message = convert.dataset(row, content)
        fmt = csvformat.check(message.csv_options, "dataset.csv_options")
        source = _BlobSource(content.inline_data, self.blobs.read(content.blob_key) if content.blob_key else None)
        try:
            _, rows = await call(csvprofile.read_preview, source, fmt, request.row_count or 20)
        finally:
            source.close()
        response = dataset_pb2.PreviewDatasetResponse(columns=message.columns, total_rows=row.row_count)
        for values in rows:
            json_format.ParseDict(values, response.rows.add())  # type: ignore[arg-type]  # a ListValue parses from a JSON array
        return response

    async def DownloadDataset(
        self,
        request: dataset_pb2.DownloadDatasetRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.DownloadDatasetRequest, dataset_pb2.DownloadDatasetResponse],
    ) -> AsyncIterator[dataset_pb2.DownloadDatasetResponse]:
        row = await call(self.store.get_dataset, tenant(), parse_name(request.name, "datasets"))
        content = await call(self.store.content, row.content_sha256)
        async for chunk in self._stream_content(content):
            yield dataset_pb2.DownloadDatasetResponse(chunk=chunk)

    # ---------------------------------------------------------- experiments

    async def CreateExperiment(
        self,
        request: experiment_pb2.CreateExperimentRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.CreateExperimentRequest, experiment_pb2.Experiment],
    ) -> experiment_pb2.Experiment:
        e = request.experiment
        validation.check_display_name(e.display_name, "experiment.display_name")
        validation.check_description(e.description, "experiment.description")
        row = await call(
            self.store.create_experiment,
            tenant(),
            experiment_id=request.experiment_id,
            dataset_id=parse_name(e.dataset, "datasets", "experiment.dataset"),
            display_name=e.display_name,
            description=e.description,
            target_column=e.target_column,
            task=e.task,
            primary_metric=e.primary_metric,
            cv_folds=e.cv_folds,
            holdout_fraction=e.holdout_fraction,
            seed=e.seed,
            allowed_model_families=list(e.allowed_model_families),
            excluded_columns=list(e.excluded_columns),
            default_stop_conditions=convert.to_dict(e.default_stop_conditions),
        )
        return convert.experiment(row, 0)

    async def GetExperiment(
        self,
        request: experiment_pb2.GetExperimentRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.GetExperimentRequest, experiment_pb2.Experiment],
    ) -> experiment_pb2.Experiment:
        row, runs = await call(self.store.get_experiment, tenant(), parse_name(request.name, "experiments"))
        return convert.experiment(row, runs)

    async def ListExperiments(
        self,
        request: experiment_pb2.ListExperimentsRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.ListExperimentsRequest, experiment_pb2.ListExperimentsResponse],
    ) -> experiment_pb2.ListExperimentsResponse:
        page = await call(self.store.list_experiments, tenant(), request.page_size, request.page_token, request.filter)
        return experiment_pb2.ListExperimentsResponse(
            experiments=[convert.experiment(row, runs) for row, runs in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateExperiment(
        self,
        request: experiment_pb2.UpdateExperimentRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.UpdateExperimentRequest, experiment_pb2.Experiment],
    ) -> experiment_pb2.Experiment:
        e = request.experiment
        values = {
            "display_name": e.display_name,
            "description": e.description,
            "default_stop_conditions": convert.to_dict(e.default_stop_conditions),
        }
        row, runs = await call(
            self.store.update_experiment,
            tenant(),
            parse_name(e.name, "experiments", "experiment.name"),
            list(request.update_mask.paths),
            values,
        )
        return convert.experiment(row, runs)

    async def DeleteExperiment(
        self,
        request: experiment_pb2.DeleteExperimentRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.DeleteExperimentRequest, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        removed = await call(self.store.delete_experiment, tenant(), parse_name(request.name, "experiments"))
        await self._drop_blobs(removed)
        return empty_pb2.Empty()

    # ----------------------------------------------------------------- runs

    async def CreateRun(
        self, request: pb.CreateRunRequest, ctx: grpc.aio.ServicerContext[pb.CreateRunRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        r = request.run
        experiment_id = parse_name(r.experiment, "experiments", "run.experiment")
        conditions = convert.to_dict(r.stop_conditions) if r.HasField("stop_conditions") else None
        row = await call(
            self.store.create_run,
            tenant(),
            experiment_id,
            conditions,
            r.parallel_workers,
            self.settings.tenant_max_active_runs,
        )
        return convert.run(row, experiment_id)

    async def GetRun(
        self, request: run_pb2.GetRunRequest, ctx: grpc.aio.ServicerContext[run_pb2.GetRunRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        run_id = parse_name(request.name, "runs")
        return await self._kept(request, lambda: read_by_key(self.store, self.store.get_run, tenant(), run_id))

    async def ListRuns(
        self,
        request: run_pb2.ListRunsRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.ListRunsRequest, run_pb2.ListRunsResponse],
    ) -> run_pb2.ListRunsResponse:
        async def load() -> run_pb2.ListRunsResponse:
            page = await call(self.store.list_runs, tenant(), request.page_size, request.page_token, request.filter)
            return run_pb2.ListRunsResponse(
                runs=page.items,
                next_page_token=page.next_page_token,
                total_size=page.total_size,
            )

        return await self._kept(request, load)

    async def ListRunRecords(
        self,
        request: pb.ListRunRecordsRequest,
        ctx: grpc.aio.ServicerContext[pb.ListRunRecordsRequest, pb.ListRunRecordsResponse],
    ) -> pb.ListRunRecordsResponse:
        async def load() -> pb.ListRunRecordsResponse:
            page = await call(
                self.store.list_run_records, tenant(), request.page_size, request.page_token, request.filter
            )
            return pb.ListRunRecordsResponse(records=page.items, next_page_token=page.next_page_token)

        return await self._kept(request, load)

    async def UpdateRunState(
        self, request: pb.UpdateRunStateRequest, ctx: grpc.aio.ServicerContext[pb.UpdateRunStateRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        row, experiment_id = await call(
            self.store.update_run_state,
            tenant(),
            parse_name(request.name, "runs"),
            expected=list(request.expected_states),
            state=request.state,
            stop_reason=request.stop_reason,
            status_message=request.status_message,
            runner_id=request.runner_id,
            add_notes=list(request.add_notes),
            takeover=request.takeover,
            max_queued_runs=self.settings.tenant_max_queued_runs,
        )
        return convert.run(row, experiment_id)

    async def HeartbeatRun(
        self, request: pb.HeartbeatRunRequest, ctx: grpc.aio.ServicerContext[pb.HeartbeatRunRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        if not request.runner_id:
            raise InvalidArgument.field("runner_id", "required")
        row, experiment_id = await call(
            self.store.heartbeat_run,
            tenant(),
            parse_name(request.name, "runs"),
            request.runner_id,
            list(request.add_notes),
        )
        return convert.run(row, experiment_id)

    # -------------------------------------------------------- model results

    async def BatchCreateModelResults(
        self,
        request: pb.BatchCreateModelResultsRequest,
        ctx: grpc.aio.ServicerContext[pb.BatchCreateModelResultsRequest, pb.BatchCreateModelResultsResponse],
    ) -> pb.BatchCreateModelResultsResponse:
        run_id = parse_name(request.run, "runs", "run")
        rows, run = await call(
            self.store.create_results, tenant(), run_id, [convert.result_fields(m) for m in request.model_results]
        )
        by_id = {row.id: row for row in rows}
        results = []
        for row, message in zip(rows, request.model_results, strict=True):
            stored = run_pb2.ModelResult()
            stored.CopyFrom(message)
            stored.name = f"modelResults/{row.id}"
            stored.run = f"runs/{run_id}"
            stored.index = by_id[row.id].position
            stored.was_new_best = row.was_new_best
            stored.create_time.CopyFrom(convert._ts(row.create_time))
            results.append(stored)
        experiment = (await call(self.store.get_run, tenant(), run_id)).experiment
        return pb.BatchCreateModelResultsResponse(
            model_results=results, run=convert.run(run, experiment.removeprefix("experiments/"))
        )

    async def GetModelResult(
        self,
        request: run_pb2.GetModelResultRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.GetModelResultRequest, run_pb2.ModelResult],
    ) -> run_pb2.ModelResult:
        row, metric_rows = await call(self.store.get_result, tenant(), parse_name(request.name, "modelResults"))
        return convert.model_result(row, metric_rows, request.view != run_pb2.MODEL_RESULT_VIEW_BASIC)

    async def ListModelResults(
        self,
        request: run_pb2.ListModelResultsRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.ListModelResultsRequest, run_pb2.ListModelResultsResponse],
    ) -> run_pb2.ListModelResultsResponse:
        page = await call(
            self.store.list_results,
            tenant(),
            parse_name(request.run, "runs", "run"),
            request.page_size,
            request.page_token,
            request.filter,
        )
        full = request.view == run_pb2.MODEL_RESULT_VIEW_FULL
        return run_pb2.ListModelResultsResponse(
            model_results=[convert.model_result(row, metric_rows, full) for row, metric_rows in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def GetLeaderboard(
        self,
        request: run_pb2.GetLeaderboardRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.GetLeaderboardRequest, run_pb2.GetLeaderboardResponse],
    ) -> run_pb2.GetLeaderboardResponse:
        if request.metric and request.metric not in common_pb2.Metric.values():
            raise InvalidArgument.field("metric", f"unknown metric {request.metric}")
        run_id = parse_name(request.run, "runs", "run")

        async def load() -> run_pb2.GetLeaderboardResponse:
            page, metric = await call(
                self.store.leaderboard, tenant(), run_id, request.metric, request.page_size, request.page_token
            )
            return run_pb2.GetLeaderboardResponse(
                entries=page.items,
                next_page_token=page.next_page_token,
                total_size=page.total_size,
                metric=metric,
                higher_is_better=metrics.higher_is_better(metric),
            )

        return await self._kept(request, load)

    # ------------------------------------------------------- trained models

    async def _trained_model_message(self, row: Any, experiment_id: str) -> model_pb2.TrainedModel:
        content = None
        if row.artifact_id:
            _, content = await call(self.store.get_artifact, tenant(), row.artifact_id)
        return convert.trained_model(row, experiment_id, content)

    async def CreateTrainedModel(
        self,
        request: pb.CreateTrainedModelRequest,
        ctx: grpc.aio.ServicerContext[pb.CreateTrainedModelRequest, model_pb2.TrainedModel],
    ) -> model_pb2.TrainedModel:
        result_id = parse_name(request.trained_model.model_result, "modelResults", "trained_model.model_result")
        row = await call(self.store.create_trained_model, tenant(), result_id, request.trained_model.includes_holdout)
        _, experiment_id = await call(self.store.get_trained_model, tenant(), row.id)
        return convert.trained_model(row, experiment_id)

    async def GetTrainedModel(
        self,
        request: model_pb2.GetTrainedModelRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.GetTrainedModelRequest, model_pb2.TrainedModel],
    ) -> model_pb2.TrainedModel:
        row, experiment_id = await call(
            self.store.get_trained_model, tenant(), parse_name(request.name, "trainedModels")
        )
        return await self._trained_model_message(row, experiment_id)

    async def ListTrainedModels(
        self,
        request: model_pb2.ListTrainedModelsRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.ListTrainedModelsRequest, model_pb2.ListTrainedModelsResponse],
    ) -> model_pb2.ListTrainedModelsResponse:
        page = await call(
            self.store.list_trained_models, tenant(), request.page_size, request.page_token, request.filter
        )
        return model_pb2.ListTrainedModelsResponse(
            trained_models=[await self._trained_model_message(row, eid) for row, eid in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateTrainedModel(
        self,
        request: pb.UpdateTrainedModelRequest,
        ctx: grpc.aio.ServicerContext[pb.UpdateTrainedModelRequest, model_pb2.TrainedModel],
    ) -> model_pb2.TrainedModel:
        m = request.trained_model
        values = {
            "state": m.state,
            "error_message": m.error_message,
            "feature_columns": [convert.to_dict(col) for col in m.feature_columns],
            "classes": list(m.classes),
            "training_rows": m.training_rows,
            "fit_time_seconds": m.fit_time_seconds,
            "artifact": optional_name(m.artifact, "artifacts", "trained_model.artifact"),
            "holdout_evaluation": (convert.to_dict(m.holdout_evaluation) if m.HasField("holdout_evaluation") else None),
        }
        row, experiment_id = await call(
            self.store.update_trained_model,
            tenant(),
            parse_name(m.name, "trainedModels", "trained_model.name"),
            list(request.update_mask.paths),
            values,
        )
        return await self._trained_model_message(row, experiment_id)

    async def FailLostTrainings(
        self,
        request: pb.FailLostTrainingsRequest,
        ctx: grpc.aio.ServicerContext[pb.FailLostTrainingsRequest, pb.FailLostTrainingsResponse],
    ) -> pb.FailLostTrainingsResponse:
        if tenant() != ALL_TENANTS:
            raise errors.PermissionDenied('FailLostTrainings acts for every tenant: call it with "x-automl-tenant: *"')
        if not request.HasField("silent_since"):
            raise InvalidArgument.field("silent_since", "required")
        if not request.error_message:
            raise InvalidArgument.field("error_message", "required")
        validation.check_description(request.error_message, "error_message")
        failed = await call(self.store.fail_lost_trainings, request.silent_since.ToDatetime(), request.error_message)
        return pb.FailLostTrainingsResponse(
            records=[
                pb.TrainedModelRecord(trained_model=convert.trained_model(row, experiment_id), tenant=row.tenant)
                for row, experiment_id in failed
            ]
        )

    # ------------------------------------------------------------ artifacts

    async def WriteArtifact(
        self,
        request_iterator: AsyncIterator[pb.WriteArtifactRequest],
        ctx: grpc.aio.ServicerContext[pb.WriteArtifactRequest, pb.Artifact],
    ) -> pb.Artifact:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("content") != "header":
            raise InvalidArgument.field("header", "the first message must carry the header")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("content") != "chunk":
                    raise InvalidArgument.field("header", "only the first message may carry a header")
                yield message.chunk

        content, _ = await self._write(chunks(), expected_sha256=first.header.expected_sha256)
        try:
            row, is_new = await call(self.store.create_artifact, tenant(), first.header.kind, content)
        except BaseException:
            if content.blob_key:
                await asyncio.shield(call(self.blobs.delete, content.blob_key))
            raise
        if not is_new and content.blob_key:
            await call(self.blobs.delete, content.blob_key)
        return convert.artifact(row, await call(self.store.content, content.sha256))

    async def ReadArtifact(
        self,
        request: pb.ReadArtifactRequest,
        ctx: grpc.aio.ServicerContext[pb.ReadArtifactRequest, pb.ReadArtifactResponse],
    ) -> AsyncIterator[pb.ReadArtifactResponse]:
        row, content = await call(self.store.get_artifact, tenant(), parse_name(request.name, "artifacts"))
        yield pb.ReadArtifactResponse(artifact=convert.artifact(row, content))
        async for chunk in self._stream_content(content):
            yield pb.ReadArtifactResponse(chunk=chunk)

    async def DeleteArtifact(
        self,
        request: pb.DeleteArtifactRequest,
        ctx: grpc.aio.ServicerContext[pb.DeleteArtifactRequest, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        await self._drop_blobs(await call(self.store.delete_artifact, tenant(), parse_name(request.name, "artifacts")))
        return empty_pb2.Empty()

    # --------------------------------------------------------------- events

    async def AppendEvents(
        self,
        request: pb.AppendEventsRequest,
        ctx: grpc.aio.ServicerContext[pb.AppendEventsRequest, pb.AppendEventsResponse],
    ) -> pb.AppendEventsResponse:
        events = []
        given = []
        for i, event in enumerate(request.events):
            if event.WhichOneof("payload") is None:
                raise InvalidArgument.field(f"events[{i}].payload", "required: what happened")
            if event.sequence <= 0:
                raise InvalidArgument.field(f"events[{i}].sequence", "required: the run's next sequence (from 1)")
            if event.id and not valid_event_id(event.id):
                raise InvalidArgument.field(f"events[{i}].id", EVENT_ID_RULE)
            copy = type(event)()
            copy.CopyFrom(event)
            copy.id = copy.id or new_event_id()
            given.append(copy)
            events.append(
                {
                    "run_id": parse_name(event.run, "runs", f"events[{i}].run"),
                    "sequence": event.sequence,
                    "event_type": event.type,
                    "payload": copy.SerializeToString(),
                    "create_time": event.create_time.ToDatetime() if event.HasField("create_time") else None,
                    "event_id": copy.id,
                }
            )
        appended = await call(self.store.append_events, tenant(), events)
        stored = []
        for copy, row in zip(given, appended, strict=True):
            if row.already_stored:
                copy = event_pb2.Event.FromString(row.payload)
            copy.sequence = row.sequence
            copy.global_sequence = row.global_sequence
            stored.append(copy)
        return pb.AppendEventsResponse(events=stored, already_stored=[row.already_stored for row in appended])

    async def ListEvents(
        self, request: pb.ListEventsRequest, ctx: grpc.aio.ServicerContext[pb.ListEventsRequest, pb.ListEventsResponse]
    ) -> pb.ListEventsResponse:
        rows, has_more, first = await call(
            self.store.list_events,
            tenant(),
            run_id=optional_name(request.run, "runs", "run"),
            experiment_id=optional_name(request.experiment, "experiments", "experiment"),
            after_global_sequence=request.after_global_sequence,
            after_sequence=request.after_sequence,
            event_types=list(request.event_types),
            page_size=request.page_size,
        )
        return pb.ListEventsResponse(
            events=[convert.event(row) for row in rows], has_more=has_more, first_kept_global_sequence=first
        )

    # -------------------------------------------------------- subscriptions

    async def CreateSubscriptionRecord(
        self,
        request: pb.CreateSubscriptionRecordRequest,
        ctx: grpc.aio.ServicerContext[pb.CreateSubscriptionRecordRequest, pb.SubscriptionRecord],
    ) -> pb.SubscriptionRecord:
        record = request.record
        sub = record.subscription
        if not record.token_sha256:
            raise InvalidArgument.field("record.token_sha256", "required")
        row = await call(
            self.store.create_subscription,
            tenant(),
            {
                "run_id": optional_name(sub.run, "runs", "record.subscription.run"),
                "experiment_id": optional_name(sub.experiment, "experiments", "record.subscription.experiment"),
                "event_types": list(sub.event_types),
                "webhook_url": sub.webhook_url,
                "webhook_secret": record.webhook_secret,
                "webhook_status": convert.to_dict(sub.webhook_status) if sub.HasField("webhook_status") else None,
                "state": sub.state or 1,
                "token_sha256": record.token_sha256,
            },
        )
        return convert.subscription(row)

    async def GetSubscriptionRecord(
        self,
        request: pb.GetSubscriptionRecordRequest,
        ctx: grpc.aio.ServicerContext[pb.GetSubscriptionRecordRequest, pb.SubscriptionRecord],
    ) -> pb.SubscriptionRecord:
        if request.WhichOneof("key") == "name":
            row = await call(
                self.store.get_subscription, tenant(), subscription_id=parse_name(request.name, "subscriptions")
            )
        elif request.token_sha256:
            row = await call(self.store.get_subscription, tenant(), token_sha256=request.token_sha256)
        else:
            raise InvalidArgument.field("key", "set name or token_sha256")
        return convert.subscription(row)

    async def ListSubscriptionRecords(
        self,
        request: pb.ListSubscriptionRecordsRequest,
        ctx: grpc.aio.ServicerContext[pb.ListSubscriptionRecordsRequest, pb.ListSubscriptionRecordsResponse],
    ) -> pb.ListSubscriptionRecordsResponse:
        page = await call(
            self.store.list_subscriptions,
            tenant(),
            request.page_size,
            request.page_token,
            request.active_webhooks_only,
        )
        return pb.ListSubscriptionRecordsResponse(
            records=[convert.subscription(row) for row in page.items], next_page_token=page.next_page_token
        )

    async def UpdateSubscriptionRecord(
        self,
        request: pb.UpdateSubscriptionRecordRequest,
        ctx: grpc.aio.ServicerContext[pb.UpdateSubscriptionRecordRequest, pb.SubscriptionRecord],
    ) -> pb.SubscriptionRecord:
        sub = request.record.subscription
        values: dict[str, Any] = {}
        for path in request.update_mask.paths:
            if path == "subscription.state":
                values["state"] = sub.state
            elif path == "subscription.webhook_status":
                values["webhook_status"] = convert.to_dict(sub.webhook_status)
            elif path == "webhook_secret":  # the notifier encrypting a secret stored in clear
                values["webhook_secret"] = request.record.webhook_secret
            else:
                raise InvalidArgument.field(
                    "update_mask", f"{path}: use subscription.state, subscription.webhook_status, webhook_secret"
                )
        if not values:
            raise InvalidArgument.field("update_mask", "required")
        row = await call(
            self.store.update_subscription,
            tenant(),
            parse_name(sub.name, "subscriptions", "record.subscription.name"),
            values,
        )
        return convert.subscription(row)

    # ------------------------------------------------------------- API keys

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, ctx: grpc.aio.ServicerContext[pb.CreateApiKeyRequest, pb.ApiKey]
    ) -> pb.ApiKey:
        key = request.api_key
        row = await call(self.store.create_api_key, key.tenant, key.display_name, key.prefix, request.key_sha256)
        return convert.api_key(row)

    async def LookupApiKey(
        self, request: pb.LookupApiKeyRequest, ctx: grpc.aio.ServicerContext[pb.LookupApiKeyRequest, pb.ApiKey]
    ) -> pb.ApiKey:
        return await self._kept(request, lambda: read_by_key(self.store, self.store.lookup_api_key, request.key_sha256))

    async def ListApiKeys(
        self,
        request: pb.ListApiKeysRequest,
        ctx: grpc.aio.ServicerContext[pb.ListApiKeysRequest, pb.ListApiKeysResponse],
    ) -> pb.ListApiKeysResponse:
        page = await call(self.store.list_api_keys, request.page_size, request.page_token)
        return pb.ListApiKeysResponse(
            api_keys=[convert.api_key(row) for row in page.items], next_page_token=page.next_page_token
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, ctx: grpc.aio.ServicerContext[pb.RevokeApiKeyRequest, pb.ApiKey]
    ) -> pb.ApiKey:
        return convert.api_key(await call(self.store.revoke_api_key, parse_name(request.name, "apiKeys")))


class _BlobSource(io.RawIOBase):
    """Inline bytes or a blob's chunks as a file-like object (for the preview)."""

    def __init__(self, inline: bytes | None, chunks: Generator[bytes, None, None] | None) -> None:
        self.inline = io.BytesIO(inline or b"")
        self.chunks = chunks
        self.pending = b""

    def read(self, size: int = -1) -> bytes:
        if self.chunks is None:
            return self.inline.read(size)
        while size < 0 or len(self.pending) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.pending += chunk
        take = len(self.pending) if size < 0 else size
        out, self.pending = self.pending[:take], self.pending[take:]
        return out

    def close(self) -> None:
        if self.chunks is not None and hasattr(self.chunks, "close"):
            self.chunks.close()
        super().close()
