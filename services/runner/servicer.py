"""gRPC face of the runner service.

Every method answers UNIMPLEMENTED until the runner issues land (the generated
base class raises NotImplementedError, mapped by the interceptor)."""

from automl.v1 import runner_service_pb2_grpc


class RunnerServicer(runner_service_pb2_grpc.RunnerServicer):
    """automl.v1.Runner."""
