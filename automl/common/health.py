"""Health probe of a suite service over grpc.health.v1.

`python -m automl.common.health HOST:PORT [SERVICE]` exits 0 when the service
answers SERVING, 1 otherwise: the container health check and `make demo` use it.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from automl.common import identity
from automl.common.settings import Settings

PUBLIC_SERVICE = "automl.v1.AutoML"


def check(target: str, service: str = "", timeout: float = 2.0, tls: grpc.ChannelCredentials | None = None) -> str:
    """The health status name ("SERVING", "NOT_SERVING", ...) or "UNREACHABLE".
    `tls`: a caller's mutual TLS credentials, for an internal service that asks for them."""
    try:
        with grpc.secure_channel(target, tls) if tls is not None else grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            # types-grpcio-health-checking declares HealthStub without its methods (set in __init__):
            rpc: grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
            rpc = stub.Check  # type: ignore[attr-defined]  # HealthStub's stub lacks Check (an instance attribute)
            reply = rpc(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError:
        return "UNREACHABLE"


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m automl.common.health HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    target, service = argv[0], argv[1] if len(argv) > 1 else ""
    # An internal service under mutual TLS answers only a caller with a certificate
    # of the suite's CA: the probe presents its own container's.
    tls = None if service == PUBLIC_SERVICE else identity.channel_credentials(Settings.from_env())
    state = check(target, service, tls=tls)
    print(state)
    return 0 if state == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
