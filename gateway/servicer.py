"""gRPC face of the public automl.v1.AutoML service.

Every method answers UNIMPLEMENTED until the gateway issue lands (the
generated base class raises NotImplementedError, mapped by the interceptor)."""

from automl.v1 import automl_service_pb2_grpc


class AutoMLServicer(automl_service_pb2_grpc.AutoMLServicer):
    """automl.v1.AutoML."""
