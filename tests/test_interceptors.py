"""The interceptor chain, in-process: error mapping to status codes with rich
details, request ids, pass-through of downstream errors, UNIMPLEMENTED."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from automl.common import channels, context, errors, identity, status
from automl.common.server import Server, ServiceDefinition, make_server
from automl.common.settings import Settings
from automl.v1 import dataset_pb2, run_pb2, storage_service_pb2, storage_service_pb2_grpc
from tests import internal

SETTINGS = Settings(internal_secret=internal.SECRET)


class FakeStorage(storage_service_pb2_grpc.StorageServicer):
    """Raises what the request's name asks for; records the metadata it saw."""

    def __init__(self, downstream: str | None = None) -> None:
        self.downstream = downstream
        self.seen_request_ids: list[str] = []

    async def GetDataset(self, request: dataset_pb2.GetDatasetRequest, ctx: grpc.aio.ServicerContext):
        self.seen_request_ids.append(context.request_id.get())
        if self.downstream:
            async with channels.connect(self.downstream, SETTINGS, internal.credentials()) as channel:
                return await storage_service_pb2_grpc.StorageStub(channel).GetDataset(request)
        match request.name:
            case "datasets/invalid":
                raise errors.InvalidArgument(
                    "2 fields are wrong",
                    [
                        errors.FieldViolation("name", "must look like datasets/{id}"),
                        errors.FieldViolation("page_size", "must be between 1 and 1000"),
                    ],
                )
            case "datasets/missing":
                raise errors.NotFound("datasets/missing does not exist")
            case "datasets/boom":
                raise RuntimeError("secret internal detail")
        if request.name.startswith("datasets/quotes-everything/"):  # an error quoting a whole input
            value = request.name.removeprefix("datasets/quotes-everything/")
            raise errors.InvalidArgument(
                f"name {value!r} is not a name",
                [errors.FieldViolation(f"name.{i}.{value}", f"{value!r} is wrong") for i in range(1000)],
            )
        return dataset_pb2.Dataset(name=request.name)

    async def DownloadDataset(self, request, ctx) -> AsyncIterator[dataset_pb2.DownloadDatasetResponse]:
        yield dataset_pb2.DownloadDatasetResponse(chunk=b"first")
        raise errors.DataLoss("blob checksum mismatch after the first chunk")


async def start(servicer: FakeStorage) -> Server:
    definition = ServiceDefinition(
        name="test",
        descriptors=(storage_service_pb2.DESCRIPTOR.services_by_name["Storage"],),
        port=0,
        register=lambda s: storage_service_pb2_grpc.add_StorageServicer_to_server(servicer, s),
    )
    server = make_server(definition, SETTINGS, port=0)
    await server.start()
    return server


@pytest.fixture
async def stub():
    server = await start(FakeStorage())
    async with internal.aio_channel(f"127.0.0.1:{server.port}") as channel:
        yield storage_service_pb2_grpc.StorageStub(channel)
    await server.stop(0)


async def test_ok(stub):
    reply = await stub.GetDataset(dataset_pb2.GetDatasetRequest(name="datasets/a"))
    assert reply.name == "datasets/a"


async def test_invalid_argument_carries_field_violations_and_request_id(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetDataset(
            dataset_pb2.GetDatasetRequest(name="datasets/invalid"), metadata=[("x-request-id", "req-42")]
        )
    err = caught.value
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "2 fields are wrong"
    assert [(v.field, v.description) for v in status.field_violations(err)] == [
        ("name", "must look like datasets/{id}"),
        ("page_size", "must be between 1 and 1000"),
    ]
    details = rpc_status.from_call(err).details
    infos = [d for d in details if d.Is(error_details_pb2.RequestInfo.DESCRIPTOR)]
    info = error_details_pb2.RequestInfo()
    infos[0].Unpack(info)
    assert info.request_id == "req-42"
    assert ("x-request-id", "req-42") in tuple(err.trailing_metadata())


async def test_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetDataset(dataset_pb2.GetDatasetRequest(name="datasets/missing"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "datasets/missing does not exist"


async def test_unexpected_error_is_internal_without_leaking(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetDataset(dataset_pb2.GetDatasetRequest(name="datasets/boom"))
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details()
    assert "request id" in caught.value.details()


async def test_error_in_a_stream_after_messages(stub):
    call = stub.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name="datasets/a"))
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in call:
            received.append(message.chunk)
    assert received == [b"first"]
    assert caught.value.code() is grpc.StatusCode.DATA_LOSS


async def test_method_not_built_yet_is_unimplemented(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetRun(run_pb2.GetRunRequest(name="runs/x"))
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert caught.value.details() == "GetRun is not implemented yet in this version of the suite"


async def test_downstream_errors_pass_through_with_details_and_request_id():
    leaf_servicer = FakeStorage()
    leaf = await start(leaf_servicer)
    front_servicer = FakeStorage(downstream=f"127.0.0.1:{leaf.port}")
    front = await start(front_servicer)
    try:
        async with internal.aio_channel(f"127.0.0.1:{front.port}") as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetDataset(
                    dataset_pb2.GetDatasetRequest(name="datasets/invalid"), metadata=[("x-request-id", "chain-1")]
                )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert len(status.field_violations(caught.value)) == 2
        assert front_servicer.seen_request_ids == ["chain-1"]
        assert leaf_servicer.seen_request_ids == ["chain-1"]
    finally:
        await front.stop(0)
        await leaf.stop(0)


async def test_every_domain_error_has_a_code():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.AutoMLError)]
    unmapped = [c.__name__ for c in classes if c is not errors.AutoMLError and c not in status.CODES]
    assert unmapped == []


class ContextRecorder(storage_service_pb2_grpc.StorageServicer):
    """Records the tenant and request id each kind of call arrived with."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, str]] = {}

    def _record(self, method: str) -> None:
        self.seen[method] = (context.tenant.get(), context.request_id.get())

    async def GetDataset(self, request, ctx):
        self._record("unary")
        return dataset_pb2.Dataset(name=request.name)

    async def DownloadDataset(self, request, ctx):
        self._record("server stream")
        yield dataset_pb2.DownloadDatasetResponse(chunk=b"x")

    async def UploadDataset(self, request_iterator, ctx):
        self._record("client stream")
        async for _ in request_iterator:
            pass
        return dataset_pb2.Dataset(name="datasets/u")


async def test_outgoing_calls_of_every_kind_carry_the_call_context():
    """grpc.aio files a client interceptor under the first call kind it
    implements, so a single object for all kinds silently skipped streams."""
    recorder = ContextRecorder()
    server = await start(recorder)
    try:
        context.tenant.set("acme")
        context.request_id.set("rid-7")
        async with channels.connect(f"127.0.0.1:{server.port}", SETTINGS, internal.credentials()) as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            await stub.GetDataset(dataset_pb2.GetDatasetRequest(name="datasets/a"))
            async for _ in stub.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name="datasets/a")):
                pass

            async def chunks():
                yield dataset_pb2.UploadDatasetRequest(chunk=b"a")

            await stub.UploadDataset(chunks())
        assert recorder.seen == {kind: ("acme", "rid-7") for kind in ("unary", "server stream", "client stream")}
    finally:
        await server.stop(0)


# ----------------------------------------------------------- service identity


UNAUTHENTICATED, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
FORGED = identity.credential(b"x" * 32, "root")
ELSEWHERE = identity.Credentials(b"another-install-secret-0123456789abcdef", "gateway")  # another install's


def as_(who: str, tenant: str) -> list[tuple[str, str]]:
    return [*internal.credentials(who).metadata(), ("x-automl-tenant", tenant)]


@pytest.mark.parametrize(
    ("metadata", "code", "says"),
    [
        ([], UNAUTHENTICATED, "internal service"),
        ([(identity.IDENTITY_KEY, "gateway"), (identity.CREDENTIAL_KEY, "0" * 64)], UNAUTHENTICATED, ""),
        (ELSEWHERE.metadata(), UNAUTHENTICATED, ""),
        ([(identity.IDENTITY_KEY, "root"), (identity.CREDENTIAL_KEY, FORGED)], UNAUTHENTICATED, ""),
        (as_("admin", "acme"), DENIED, "tenants"),
        (as_("gateway", "*"), DENIED, "every tenant"),
        (as_("runner", "*"), DENIED, "every tenant"),
    ],
)
async def test_internal_services_refuse_callers_without_a_suite_credential_or_beyond_their_rights(metadata, code, says):
    recorder = ContextRecorder()
    server = await start(recorder)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetDataset(dataset_pb2.GetDatasetRequest(name="datasets/a"), metadata=metadata)
            assert caught.value.code() is code and says in caught.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in stub.DownloadDataset(
                    dataset_pb2.DownloadDatasetRequest(name="datasets/a"), metadata=metadata
                ):
                    pass
            assert caught.value.code() is code
        assert recorder.seen == {}  # nothing reached the servicer
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    ("who", "tenant", "method", "allowed"),
    [
        ("supervisor", "*", "/automl.v1.Storage/ListRunRecords", True),
        ("notifier", "*", "/automl.v1.Storage/GetSubscriptionRecord", True),
        ("runner", "acme", "/automl.v1.Storage/GetRun", True),
        ("gateway", "", "/automl.v1.Storage/LookupApiKey", True),
        ("admin", "", "/automl.v1.Storage/CreateApiKey", True),
        ("runner", "", "/automl.v1.Storage/CreateApiKey", False),
        ("notifier", "", "/automl.v1.Storage/ListApiKeys", False),
        ("supervisor", "", "/automl.v1.Storage/RevokeApiKey", False),
        ("admin", "acme", "/automl.v1.Storage/GetRun", False),
    ],
)
def test_the_rules_of_the_internal_plane(who, tenant, method, allowed):
    verifier = identity.Verifier(internal.SECRET.encode())
    metadata = dict(internal.credentials(who).metadata()) | ({"x-automl-tenant": tenant} if tenant else {})
    if allowed:
        assert verifier.admit(metadata, method) == tenant
    else:
        with pytest.raises(errors.PermissionDenied):
            verifier.admit(metadata, method)


async def test_probes_need_no_credential():
    server = await start(ContextRecorder())
    try:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


@pytest.mark.parametrize("value", ["x" * 70_000, "é" * 20_000, "\x01" * 20_000, "数" * 20_000])
async def test_an_error_quoting_a_huge_input_keeps_its_status(stub, value):
    """Past 8 KiB of trailers a gRPC client starts refusing them (at random;
    always past 16 KiB) and reports RESOURCE_EXHAUSTED (HTTP 429) instead of
    the error: the message and the violations are capped where every status
    is built (automl.common.status), whatever a service quotes."""
    for _ in range(5):  # the refusal between 8 and 16 KiB is random: not once in 5
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetDataset(dataset_pb2.GetDatasetRequest(name=f"datasets/quotes-everything/{value}"))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert caught.value.details().startswith("name '")
        assert caught.value.details().endswith(" more characters)")
        violations = status.field_violations(caught.value)
        assert len(violations) <= status.MAX_VIOLATIONS + 1
        assert violations[-1].description.endswith("more violations not listed")
        size = sum(len(k) + len(v) for k, v in caught.value.trailing_metadata())
        assert size < 8192, size


def test_messages_are_capped_by_their_weight_in_the_trailer():
    assert status.cap_message("short") == "short"
    assert status.cap_message("a" * status.MAX_MESSAGE_COST) == "a" * status.MAX_MESSAGE_COST
    cut = status.cap_message("a" * 5000)
    assert cut.endswith("… (3,540 more characters)") and cut.startswith("a" * 1400)
    cut = status.cap_message("é" * 5000)  # 3 bytes per UTF-8 byte once percent-encoded
    assert len(cut) < 300 and cut.endswith("more characters)")


class KeyCheck:
    """An `authenticate` with rechecks: the key in `authorization` is good
    unless revoked; counts the rechecks of each key."""

    recheck_seconds = 0.05

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.rechecks: dict[str, int] = {}

    async def __call__(self, metadata: dict, method: str) -> str:
        key = str(metadata.get("authorization", ""))
        if key in self.revoked:
            raise errors.Unauthenticated(f"{key} was revoked")
        return "alpha"

    async def recheck(self, metadata: dict, method: str) -> str:
        key = str(metadata.get("authorization", ""))
        self.rechecks[key] = self.rechecks.get(key, 0) + 1
        return await self(metadata, method)


class Endless(FakeStorage):
    async def DownloadDataset(self, request, ctx) -> AsyncIterator[dataset_pb2.DownloadDatasetResponse]:
        yield dataset_pb2.DownloadDatasetResponse(chunk=b"first")
        await asyncio.Event().wait()  # open until the caller leaves or the key is refused
        yield dataset_pb2.DownloadDatasetResponse()  # not reached


async def test_open_streams_are_rechecked_once_per_key_and_a_refusal_ends_that_keys_streams():
    check = KeyCheck()
    definition = ServiceDefinition(
        name="test",
        descriptors=(storage_service_pb2.DESCRIPTOR.services_by_name["Storage"],),
        port=0,
        register=lambda s: storage_service_pb2_grpc.add_StorageServicer_to_server(Endless(), s),
        authenticate=check,
    )
    server = make_server(definition, SETTINGS, port=0)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            request = dataset_pb2.DownloadDatasetRequest(name="datasets/x")
            calls = {
                key: [stub.DownloadDataset(request, metadata=[("authorization", key)]) for _ in range(n)]
                for key, n in (("key-a", 20), ("key-b", 3))
            }
            for call in calls["key-a"] + calls["key-b"]:
                assert (await call.read()).chunk == b"first"
            await asyncio.sleep(0.5)  # some 10 periods
            # One check per period for the 20 streams of key-a, not one per stream.
            assert 3 <= check.rechecks["key-a"] <= 14, check.rechecks
            assert 3 <= check.rechecks["key-b"] <= 14, check.rechecks

            check.revoked.add("key-a")
            for call in calls["key-a"]:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await asyncio.wait_for(call.read(), 2)
                assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
                assert "key-a was revoked" in (caught.value.details() or "")
            assert not any(call.done() for call in calls["key-b"])  # another key's streams go on

            for call in calls["key-b"]:
                call.cancel()
            await asyncio.sleep(0.2)
            counted = dict(check.rechecks)
            await asyncio.sleep(0.3)
            assert check.rechecks == counted  # no stream left: nothing is rechecked any more
    finally:
        await server.stop(0)
