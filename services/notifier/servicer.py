"""gRPC face of the notifier service.

Every method answers UNIMPLEMENTED until the notifier issue lands (the
generated base class raises NotImplementedError, mapped by the interceptor)."""

from automl.v1 import notifier_service_pb2_grpc


class NotifierServicer(notifier_service_pb2_grpc.NotifierServicer):
    """automl.v1.Notifier."""
