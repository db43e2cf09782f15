"""gRPC face of the storage service: translates between protobuf and the domain.

Every method answers UNIMPLEMENTED until the storage issue lands (the
generated base class raises NotImplementedError, mapped by the interceptor)."""

from automl.v1 import storage_service_pb2_grpc


class StorageServicer(storage_service_pb2_grpc.StorageServicer):
    """automl.v1.Storage."""
