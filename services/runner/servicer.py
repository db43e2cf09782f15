"""gRPC face of the runner: translates requests to the Runner (searches) and
its Models (train, test, predict) and back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from automl.common import context, names
from automl.common.errors import InvalidArgument
from automl.common.streams import drain
from automl.v1 import common_pb2, model_pb2, run_pb2, runner_service_pb2_grpc
from automl.v1 import runner_service_pb2 as pb
from services.runner.clients import Services
from services.runner.runner import Runner

SERVICES_KEPT = 1024
"""Tenants whose Services (stubs of storage and the notifier) Predict keeps."""


class RunnerServicer(runner_service_pb2_grpc.RunnerServicer):
    """automl.v1.Runner."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._services: dict[tuple[str, object, object], Services] = {}

    def _services_of(self, tenant: str) -> Services:
        """The tenant's Services, made once: Predict answers one row in a few
        milliseconds, and making the stubs was a measurable part of that."""
        key = (tenant, self.runner.storage, self.runner.notifier)  # the channels of this start of the runner
        services = self._services.get(key)
        if services is None:
            if len(self._services) >= SERVICES_KEPT:
                self._services.clear()
            services = self._services[key] = self.runner.services(tenant)
        return services

    async def ExecuteRun(
        self, request: pb.ExecuteRunRequest, ctx: grpc.aio.ServicerContext[pb.ExecuteRunRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        return await self.runner.execute(context.tenant.get(), names.check(request.name, "runs"))

    async def StopExecution(
        self, request: pb.StopExecutionRequest, ctx: grpc.aio.ServicerContext[pb.StopExecutionRequest, run_pb2.Run]
    ) -> run_pb2.Run:
        name = names.check(request.name, "runs")
        if request.reason == common_pb2.STOP_REASON_UNSPECIFIED or request.reason not in common_pb2.StopReason.values():
            raise InvalidArgument.field("reason", "required: why the run stops (e.g. STOP_REASON_USER)")
        grace = None
        if request.HasField("grace_period"):
            grace = request.grace_period.ToTimedelta().total_seconds()
            if grace < 0:
                raise InvalidArgument.field("grace_period", "must be 0 or positive")
        return await self.runner.stop_execution(name, request.reason, request.message, grace)

    async def GetRunnerStatus(
        self,
        request: pb.GetRunnerStatusRequest,
        ctx: grpc.aio.ServicerContext[pb.GetRunnerStatusRequest, pb.RunnerStatus],
    ) -> pb.RunnerStatus:
        return self.runner.status()

    async def ExecuteTraining(
        self,
        request: pb.ExecuteTrainingRequest,
        ctx: grpc.aio.ServicerContext[pb.ExecuteTrainingRequest, model_pb2.TrainedModel],
    ) -> model_pb2.TrainedModel:
        name = names.check(request.name, "trainedModels")
        return await self.runner.models.start_training(self.runner.services(context.tenant.get()), name)

    async def TestModel(
        self,
        request: model_pb2.TestModelRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.TestModelRequest, model_pb2.HoldoutEvaluation],
    ) -> model_pb2.HoldoutEvaluation:
        name = names.check(request.name, "trainedModels")
        return await self.runner.models.test(self.runner.services(context.tenant.get()), name)

    async def Predict(
        self,
        request: model_pb2.PredictRequest,
        ctx: grpc.aio.ServicerContext[model_pb2.PredictRequest, model_pb2.PredictResponse],
    ) -> model_pb2.PredictResponse:
        names.check(request.name, "trainedModels")
        return await self.runner.models.predict(self._services_of(context.tenant.get()), request)

    async def PredictStream(
        self,
        request_iterator: AsyncIterator[model_pb2.PredictStreamRequest],
        ctx: grpc.aio.ServicerContext[model_pb2.PredictStreamRequest, model_pb2.PredictStreamResponse],
    ) -> AsyncIterator[model_pb2.PredictStreamResponse]:
        services = self._services_of(context.tenant.get())
        try:
            async for block in self.runner.models.predict_stream(services, request_iterator):
                yield block
        except Exception:  # a refusal (ours, or storage's passed through): its status, not INTERNAL
            await drain(request_iterator)
            raise
