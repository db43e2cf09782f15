"""gRPC face of the runner: translates requests to the Runner and back.

TrainModel, TestModel and Predict come with the runner's second issue; until
then they answer UNIMPLEMENTED (the generated base class raises
NotImplementedError, mapped by the interceptor)."""

from __future__ import annotations

from typing import Any

from automl.common import context
from automl.common.errors import InvalidArgument
from automl.v1 import common_pb2, run_pb2, runner_service_pb2_grpc
from automl.v1 import runner_service_pb2 as pb
from services.runner.runner import Runner


def run_name(value: str, field: str = "name") -> str:
    if not value.startswith("runs/") or len(value) <= len("runs/") or "/" in value[len("runs/") :]:
        raise InvalidArgument.field(field, f"{value!r} is not a run name: use runs/{{run}}")
    return value


class RunnerServicer(runner_service_pb2_grpc.RunnerServicer):
    """automl.v1.Runner."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def ExecuteRun(self, request: pb.ExecuteRunRequest, ctx: Any) -> run_pb2.Run:
        return await self.runner.execute(context.tenant.get(), run_name(request.name))

    async def StopExecution(self, request: pb.StopExecutionRequest, ctx: Any) -> run_pb2.Run:
        name = run_name(request.name)
        if request.reason == common_pb2.STOP_REASON_UNSPECIFIED or request.reason not in common_pb2.StopReason.values():
            raise InvalidArgument.field("reason", "required: why the run stops (e.g. STOP_REASON_USER)")
        grace = None
        if request.HasField("grace_period"):
            grace = request.grace_period.ToTimedelta().total_seconds()
            if grace < 0:
                raise InvalidArgument.field("grace_period", "must be 0 or positive")
        return await self.runner.stop_execution(name, request.reason, request.message, grace)

    async def GetRunnerStatus(self, request: pb.GetRunnerStatusRequest, ctx: Any) -> pb.RunnerStatus:
        return self.runner.status()
