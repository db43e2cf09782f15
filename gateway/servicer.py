"""gRPC face of the public automl.v1.AutoML service.

Each method checks its request (gateway.validation), then forwards it to the
service that owns the work; streams go through message by message, never
buffered whole. The caller's tenant travels with every forwarded call
(automl.common.channels), so storage confines each read and write to it and
another tenant's resources answer NOT_FOUND. Errors of the internal services
pass through unchanged, with their field violations.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, field_mask_pb2
from google.protobuf.message import Message

from automl.common import context, errors, status
from automl.common.errors import InvalidArgument
from automl.common.runs import TERMINAL_STATES
from automl.common.streams import drain
from automl.v1 import (
    automl_service_pb2_grpc,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    notifier_service_pb2_grpc,
    run_pb2,
    runner_service_pb2,
    runner_service_pb2_grpc,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from automl.v1 import common_pb2 as c
from gateway import exports, quotas, watch
from gateway.backends import Backends
from gateway.cache import AnswerCache
from gateway.control import RunControl
from gateway.validation import check

log = logging.getLogger("automl.gateway")

STREAM_TIMEOUT = 3600.0  # uploads, downloads and predictions of large files

M = TypeVar("M", bound=Message)
# The paged results of a run that _run_page serves (from the cache once the run ended).
PageRequest = TypeVar("PageRequest", run_pb2.GetLeaderboardRequest, run_pb2.ListModelResultsRequest)
PageResponse = TypeVar("PageResponse", run_pb2.GetLeaderboardResponse, run_pb2.ListModelResultsResponse)


async def _checked_stream(first: M, rest: AsyncIterator[M]) -> AsyncIterator[M]:
    yield first
    async for message in rest:
        yield message


async def _first(request_iterator: AsyncIterator[M], empty: str) -> M:
    async for message in request_iterator:
        return message
    raise InvalidArgument.field("header", empty)


async def _checked_first(request_iterator: AsyncIterator[M], empty: str) -> M:
    """A client stream's first message, checked. A refused stream is read to
    its end (up to the drain limit) before the refusal is answered: a grpc.aio
    client (the HTTP door's, forwarding an upload) whose next send fails
    because the call already ended reports INTERNAL ("Internal error from
    Core") instead of the status sent (grpc/grpc#36066)."""
    first = await _first(request_iterator, empty)
    try:
        check(first)
    except InvalidArgument:
        await drain(request_iterator)
        raise
    return first


COMPRESS_BYTES = 16 * 1024
"""Answers at least this large are sent gzip-compressed to a gRPC client that
accepts gzip (grpc sends them plain to one that does not)."""


def _compress_large(ctx: grpc.aio.ServicerContext[Any, Any] | None, answer: Message) -> None:
    if ctx is not None and answer.ByteSize() >= COMPRESS_BYTES:
        ctx.set_compression(grpc.Compression.Gzip)


# A run that meets these when it starts waits QUEUED for a runner.
WAIT_REASONS: dict[type[errors.AutoMLError], str] = {
    errors.ResourceExhausted: "no runner has capacity",
    errors.Unavailable: "no runner is reachable",
    errors.DeadlineExceeded: "the runner did not answer in time",
}


class AutoMLServicer(automl_service_pb2_grpc.AutoMLServicer):
    """automl.v1.AutoML."""

    def __init__(self, backends: Backends, control: RunControl, cache: AnswerCache | None = None) -> None:
        self.backends = backends
        self.control = control
        self.streams = quotas.StreamQuota(backends.settings.tenant_max_open_streams)
        settings = backends.settings
        # `is None`, not `or`: an empty cache is falsy (len 0), and the HTTP door's
        # memo must be this very cache's.
        if cache is None:
            cache = AnswerCache.of(settings)
        self.cache = cache
        if control is not None:  # None in tests that only read
            control.changed = cache.drop_run  # what the gateway changes of a run is never read from memory
        self.watches = watch.Watches(backends, self.cache, settings.gateway_watch_buffer)

    @property
    def storage(self) -> storage_service_pb2_grpc.StorageAsyncStub:
        return self.backends.storage

    @property
    def runner(self) -> runner_service_pb2_grpc.RunnerAsyncStub:
        return self.backends.runner

    @property
    def notifier(self) -> notifier_service_pb2_grpc.NotifierAsyncStub:
        return self.backends.notifier

    # ------------------------------------------------------------ datasets

    async def UploadDataset(
        self,
        request_iterator: AsyncIterator[dataset_pb2.UploadDatasetRequest],
        ctx: grpc.aio.ServicerContext[dataset_pb2.UploadDatasetRequest, dataset_pb2.Dataset],
    ) -> dataset_pb2.Dataset:
        first = await _checked_first(request_iterator, "the stream is empty: send a header, then the file's bytes")
        call = self.storage.UploadDataset(_checked_stream(first, request_iterator), timeout=STREAM_TIMEOUT)
        try:
            return await call
        finally:
            # A no-op once answered. When the upload is cut (the HTTP door cancels
            # mid-body) storage must learn it now, to drop its temporary file: the
            # cancellation does not always reach the forwarded call by itself
            # (gRPC's task feeding it may end first, without cancelling it).
            call.cancel()

    async def GetDataset(
        self,
        request: dataset_pb2.GetDatasetRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.GetDatasetRequest, dataset_pb2.Dataset],
    ) -> dataset_pb2.Dataset:
        check(request)
        return await self.storage.GetDataset(request)

    async def ListDatasets(
        self,
        request: dataset_pb2.ListDatasetsRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.ListDatasetsRequest, dataset_pb2.ListDatasetsResponse],
    ) -> dataset_pb2.ListDatasetsResponse:
        check(request)
        return await self.storage.ListDatasets(request)

    async def DeleteDataset(
        self,
        request: dataset_pb2.DeleteDatasetRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.DeleteDatasetRequest, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        check(request)
        try:
            return await self.storage.DeleteDataset(request)
        finally:  # its experiments and runs go with it: nothing of the tenant's is served from memory
            self.cache.drop_tenant(context.tenant.get())

    async def PreviewDataset(
        self,
        request: dataset_pb2.PreviewDatasetRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.PreviewDatasetRequest, dataset_pb2.PreviewDatasetResponse],
    ) -> dataset_pb2.PreviewDatasetResponse:
        check(request)
        return await self.storage.PreviewDataset(request)

    async def DownloadDataset(
        self,
        request: dataset_pb2.DownloadDatasetRequest,
        ctx: grpc.aio.ServicerContext[dataset_pb2.DownloadDatasetRequest, dataset_pb2.DownloadDatasetResponse],
    ) -> AsyncIterator[dataset_pb2.DownloadDatasetResponse]:
        check(request)
        dataset = await self.storage.GetDataset(dataset_pb2.GetDatasetRequest(name=request.name))
        stem = re.sub(r"[^\w.-]+", "_", dataset.display_name).strip("._") or dataset.name.split("/")[-1]
        first: dataset_pb2.DownloadDatasetResponse | None = dataset_pb2.DownloadDatasetResponse(
            content_type="text/csv", filename=f"{stem.removesuffix('.csv')}.csv"
        )
        async for message in self.storage.DownloadDataset(request, timeout=STREAM_TIMEOUT):
            if first is not None:
                message.content_type, message.filename = first.content_type, first.filename
                first = None
            yield message
        if first is not None:  # an empty file still says what it is
            yield first

    # --------------------------------------------------------- experiments

    async def CreateExperiment(
        self,
        request: experiment_pb2.CreateExperimentRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.CreateExperimentRequest, experiment_pb2.Experiment],
    ) -> experiment_pb2.Experiment:
        check(request)
        return await self.storage.CreateExperiment(request)

    async def GetExperiment(
        self,
        request: experiment_pb2.GetExperimentRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.GetExperimentRequest, experiment_pb2.Experiment],
    ) -> experiment_pb2.Experiment:
        check(request)
        return await self.storage.GetExperiment(request)

    async def ListExperiments(
        self,
        request: experiment_pb2.ListExperimentsRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.ListExperimentsRequest, experiment_pb2.ListExperimentsResponse],
    ) -> experiment_pb2.ListExperimentsResponse:
        check(request)
        return await self.storage.ListExperiments(request)

    async def UpdateExperiment(
        self,
        request: experiment_pb2.UpdateExperimentRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.UpdateExperimentRequest, experiment_pb2.Experiment],
    ) -> experiment_pb2.Experiment:
        check(request)
        return await self.storage.UpdateExperiment(request)

    async def DeleteExperiment(
        self,
        request: experiment_pb2.DeleteExperimentRequest,
        ctx: grpc.aio.ServicerContext[experiment_pb2.DeleteExperimentRequest, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        check(request)
        try:
            return await self.storage.DeleteExperiment(request)
        finally:  # its runs go with it
            self.cache.drop_tenant(context.tenant.get())

    # ---------------------------------------------------------------- runs

    async def StartRun(
        self, request: run_pb2.StartRunRequest, ctx: grpc.aio.ServicerContext[run_pb2.StartRunRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        """Storage creates the run PENDING, a runner claims it. When no runner
        can take it now (all busy, or none reachable) it waits QUEUED, and the
        supervisor hands it to the first runner with capacity; a run that can
        neither start nor queue is ended at once (CANCELLED, with why), never
        left PENDING."""
        check(request)
        new = run_pb2.Run(experiment=request.experiment, parallel_workers=request.parallel_workers)
        if request.HasField("stop_conditions"):
            new.stop_conditions.CopyFrom(request.stop_conditions)
        run = await self.storage.CreateRun(storage_service_pb2.CreateRunRequest(run=new))
        tenant = context.tenant.get()
        try:
            return await self.runner.ExecuteRun(runner_service_pb2.ExecuteRunRequest(name=run.name))
        except errors.InvalidArgument:
            raise  # the runner recorded the run FAILED with the same message
        except errors.FailedPrecondition:
            return await self.storage.GetRun(run_pb2.GetRunRequest(name=run.name))  # claimed meanwhile
        except tuple(WAIT_REASONS) as exc:
            why = next(why for cls, why in WAIT_REASONS.items() if isinstance(exc, cls))
            queued = await self.control.enqueue(tenant, run, why, if_full=c.RUN_STATE_CANCELLED)
            return queued or await self.storage.GetRun(run_pb2.GetRunRequest(name=run.name))
        except errors.AutoMLError as exc:
            await self.control.end(
                tenant,
                run,
                c.RUN_STATE_CANCELLED,
                c.STOP_REASON_ERROR,
                f"the runner answered {status.code_of(exc).name}: {exc.message}",
                expected=[c.RUN_STATE_PENDING],
            )
            raise

    async def GetRun(
        self, request: run_pb2.GetRunRequest, ctx: grpc.aio.ServicerContext[run_pb2.GetRunRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        check(request)
        tenant = context.tenant.get()
        if (kept := self.cache.kept_run(tenant, request.name)) is not None:
            return kept
        mark = self.cache.mark()
        run = await self.storage.GetRun(request)
        self.cache.saw_run(tenant, run, mark)
        return run

    async def ListRuns(
        self,
        request: run_pb2.ListRunsRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.ListRunsRequest, run_pb2.ListRunsResponse],
    ) -> run_pb2.ListRunsResponse:
        check(request)
        answer = await self.storage.ListRuns(request)
        _compress_large(ctx, answer)
        return answer

    async def StopRun(
        self, request: run_pb2.StopRunRequest, ctx: grpc.aio.ServicerContext[run_pb2.StopRunRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        check(request)
        tenant = context.tenant.get()
        run = await self.storage.GetRun(run_pb2.GetRunRequest(name=request.name))
        return await self.control.stop(tenant, run, c.STOP_REASON_USER, "stopped by the user")

    async def WatchRun(
        self,
        request: event_pb2.WatchRunRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.WatchRunRequest, event_pb2.WatchRunResponse],
    ) -> AsyncIterator[event_pb2.WatchRunResponse]:
        check(request)
        with self.streams.hold(context.tenant.get()):
            async for message in self.watches.watch(request):
                yield message

    async def GetLeaderboard(
        self,
        request: run_pb2.GetLeaderboardRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.GetLeaderboardRequest, run_pb2.GetLeaderboardResponse],
    ) -> run_pb2.GetLeaderboardResponse:
        check(request)
        answer = await self._run_page("leaderboard", request, self.storage.GetLeaderboard)
        _compress_large(ctx, answer)
        return answer

    async def ListModelResults(
        self,
        request: run_pb2.ListModelResultsRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.ListModelResultsRequest, run_pb2.ListModelResultsResponse],
    ) -> run_pb2.ListModelResultsResponse:
        check(request)
        answer = await self._run_page("model_results", request, self.storage.ListModelResults)
        _compress_large(ctx, answer)
        return answer

    async def GetModelResult(
        self,
        request: run_pb2.GetModelResultRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.GetModelResultRequest, run_pb2.ModelResult],
    ) -> run_pb2.ModelResult:
        check(request)
        # A model result is written once and never updated: kept whatever its run's state.
        tenant, key = context.tenant.get(), (request.name, request.view)
        kept: run_pb2.ModelResult | None = self.cache.get(tenant, "model_result", key)
        if kept is not None:
            return kept
        result = await self.storage.GetModelResult(request)
        self.cache.put(tenant, "model_result", key, "", result)  # not dropped with its run's events
        return result

    async def _run_page(
        self, kind: str, request: PageRequest, fetch: Callable[[PageRequest], Awaitable[PageResponse]]
    ) -> PageResponse:
        """A page of a run's results (`request.run`): from the cache when the run
        is terminal. The run's state is known (or read) before the page is,
        so a page kept was read after the run ended: it is final."""
        if not self.cache.enabled:
            return await fetch(request)
        tenant = context.tenant.get()
        key = request.SerializeToString(deterministic=True)
        kept: PageResponse | None = self.cache.get(tenant, kind, key)
        if kept is not None:
            return kept
        mark = self.cache.mark()
        terminal = self.cache.terminal_run(tenant, request.run) is not None
        if not terminal and not self.cache.known_running(tenant, request.run):
            try:
                run = await self.storage.GetRun(run_pb2.GetRunRequest(name=request.run))
            except errors.AutoMLError:
                return await fetch(request)  # the page's own call says what is wrong
            self.cache.saw_run(tenant, run, mark)
            terminal = run.state in TERMINAL_STATES
        answer = await fetch(request)
        if terminal:
            self.cache.put(tenant, kind, key, request.run, answer)
        else:
            self.cache.put_running(tenant, kind, key, request.run, answer, mark)
        return answer

    async def ExportRunResults(
        self,
        request: run_pb2.ExportRunResultsRequest,
        ctx: grpc.aio.ServicerContext[run_pb2.ExportRunResultsRequest, run_pb2.ExportRunResultsResponse],
    ) -> AsyncIterator[run_pb2.ExportRunResultsResponse]:
        check(request)
        async for message in exports.export(self.backends, request):
            yield message

    # -------------------------------------------------------------- models

    async def TrainModel(
        self,
        request: model_pb2.TrainModelRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.TrainModelRequest, model_pb2.TrainedModel],
    ) -> model_pb2.TrainedModel:
        check(request)
        # Training adds events to an ended run (its last_sequence grows): not served from memory.
        self.cache.drop_runs(context.tenant.get())
        model = await self.storage.CreateTrainedModel(
            storage_service_pb2.CreateTrainedModelRequest(
                trained_model=model_pb2.TrainedModel(
                    model_result=request.model_result, includes_holdout=request.include_holdout
                )
            )
        )
        try:
            return await self.runner.ExecuteTraining(runner_service_pb2.ExecuteTrainingRequest(name=model.name))
        except errors.AutoMLError as exc:
            # Not left TRAINING for ever: the model says why it never trained.
            model.state = model_pb2.TrainedModel.STATE_FAILED
            model.error_message = f"training could not start: {status.code_of(exc).name}: {exc.message}"
            await self.storage.UpdateTrainedModel(
                storage_service_pb2.UpdateTrainedModelRequest(
                    trained_model=model, update_mask=field_mask_pb2.FieldMask(paths=["state", "error_message"])
                )
            )
            raise

    async def GetTrainedModel(
        self,
        request: model_pb2.GetTrainedModelRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.GetTrainedModelRequest, model_pb2.TrainedModel],
    ) -> model_pb2.TrainedModel:
        check(request)
        return await self.storage.GetTrainedModel(request)

    async def ListTrainedModels(
        self,
        request: model_pb2.ListTrainedModelsRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.ListTrainedModelsRequest, model_pb2.ListTrainedModelsResponse],
    ) -> model_pb2.ListTrainedModelsResponse:
        check(request)
        answer = await self.storage.ListTrainedModels(request)
        _compress_large(ctx, answer)
        return answer

    async def TestModel(
        self,
        request: model_pb2.TestModelRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.TestModelRequest, model_pb2.HoldoutEvaluation],
    ) -> model_pb2.HoldoutEvaluation:
        check(request)
        try:
            return await self.runner.TestModel(request, timeout=STREAM_TIMEOUT)
        finally:  # a MODEL_TESTED event of the run
            self.cache.drop_runs(context.tenant.get())

    async def Predict(
        self,
        request: model_pb2.PredictRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.PredictRequest, model_pb2.PredictResponse],
    ) -> model_pb2.PredictResponse:
        check(request)
        return await self.runner.Predict(request)

    async def PredictStream(
        self,
        request_iterator: AsyncIterator[model_pb2.PredictStreamRequest],
        ctx: grpc.aio.ServicerContext[model_pb2.PredictStreamRequest, model_pb2.PredictStreamResponse],
    ) -> AsyncIterator[model_pb2.PredictStreamResponse]:
        first = await _checked_first(request_iterator, "the stream is empty: send a header, then rows")
        call = self.runner.PredictStream(_checked_stream(first, request_iterator), timeout=STREAM_TIMEOUT)
        async for message in call:
            yield message

    # ------------------------------------------------------- subscriptions

    async def CreateSubscription(
        self,
        request: event_pb2.CreateSubscriptionRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.CreateSubscriptionRequest, event_pb2.CreateSubscriptionResponse],
    ) -> event_pb2.CreateSubscriptionResponse:
        check(request)
        return await self.notifier.CreateSubscription(request)

    async def GetSubscription(
        self,
        request: event_pb2.GetSubscriptionRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.GetSubscriptionRequest, event_pb2.Subscription],
    ) -> event_pb2.Subscription:
        check(request)
        return await self.notifier.GetSubscription(request)

    async def ListSubscriptions(
        self,
        request: event_pb2.ListSubscriptionsRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.ListSubscriptionsRequest, event_pb2.ListSubscriptionsResponse],
    ) -> event_pb2.ListSubscriptionsResponse:
        check(request)
        return await self.notifier.ListSubscriptions(request)

    async def DeleteSubscription(
        self,
        request: event_pb2.DeleteSubscriptionRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.DeleteSubscriptionRequest, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        check(request)
        return await self.notifier.DeleteSubscription(request)

    async def Subscribe(
        self,
        request: event_pb2.SubscribeRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.SubscribeRequest, event_pb2.SubscribeResponse],
    ) -> AsyncIterator[event_pb2.SubscribeResponse]:
        check(request)
        with self.streams.hold(context.tenant.get()):
            async for message in self.notifier.Subscribe(request):
                yield message
