"""The error map both ways (automl.common.status): every domain error becomes
its status and, on the other side of a call over an internal channel
(automl.common.channels), the same domain error again, with its message and
details; a service that lets a downstream error go passes it on unchanged,
byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from automl.common import channels, errors, status
from automl.common.server import Server, ServiceDefinition, make_server
from automl.common.settings import Settings
from automl.v1 import (
    dataset_pb2,
    model_pb2,
    runner_service_pb2,
    runner_service_pb2_grpc,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from tests import internal

SETTINGS = Settings(internal_secret=internal.SECRET)
VIOLATIONS = [
    errors.FieldViolation("name", "must look like datasets/{id}"),
    errors.FieldViolation("page_size", "at most 1000 ≤"),
]


class Slow(errors.Unavailable):
    """A domain error that says how long to wait, as gateway.auth.TooManyFailures does."""

    retry_after_seconds = 7.0


def examples() -> list[errors.AutoMLError]:
    """One error of every mapped class, with the details its class can hold."""
    out: list[errors.AutoMLError] = []
    for cls in status.CODES:
        if cls is errors.InvalidArgument:
            out.append(errors.InvalidArgument("2 fields are wrong", VIOLATIONS))
        elif cls is errors.ResourceExhausted:
            out += [errors.ResourceExhausted("quota"), errors.ResourceExhausted("file too large", too_large=True)]
        else:
            out.append(cls(f"{cls.__name__} happened: é % ünïcode"))
    return out


def ids(error: errors.AutoMLError) -> str:
    return f"{type(error).__name__}{'-too-large' if getattr(error, 'too_large', False) else ''}"


def failed_call(st: grpc.Status) -> grpc.aio.AioRpcError:
    """What a grpc.aio client raises for a call that ended with `st`."""
    return grpc.aio.AioRpcError(st.code, grpc.aio.Metadata(), grpc.aio.Metadata(*st.trailing_metadata), st.details)


def assert_same_domain_error(got: errors.AutoMLError, sent: errors.AutoMLError) -> None:
    assert isinstance(got, status.ERRORS[status.code_of(sent)])
    assert status.code_of(got) is status.code_of(sent)
    assert got.message == sent.message and str(got) == sent.message
    assert getattr(got, "violations", None) == getattr(sent, "violations", None)
    assert getattr(got, "too_large", None) == getattr(sent, "too_large", None)


# ------------------------------------------------------------------- the table


def test_the_table_maps_every_code_but_ok_to_one_class_and_back():
    assert set(status.ERRORS) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    assert all(status.CODES[cls] is code for code, cls in status.ERRORS.items())
    assert all(status.ERRORS[code] is cls for cls, code in status.CODES.items())


@pytest.mark.parametrize("sent", examples(), ids=ids)
def test_every_domain_error_comes_back_from_its_status_with_its_details(sent):
    st = status.to_status(sent, "rid-1")
    got = status.from_rpc_error(failed_call(st))
    assert_same_domain_error(got, sent)
    assert isinstance(got, status.Downstream) and isinstance(got, grpc.aio.AioRpcError)
    assert got.code() is st.code and got.details() == st.details
    again = status.to_status(got, "rid-1")  # rebuilt from the domain error: the same status
    assert (again.code, again.details, again.trailing_metadata) == (st.code, st.details, st.trailing_metadata)


def test_an_error_already_translated_is_not_translated_again():
    once = status.from_rpc_error(failed_call(status.to_status(errors.NotFound("x"))))
    assert status.from_rpc_error(once) is once  # type: ignore[arg-type]


def test_a_status_without_details_or_with_unreadable_ones_still_maps():
    bare = grpc.aio.AioRpcError(grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(), grpc.aio.Metadata(), None)
    got = status.from_rpc_error(bare)
    assert isinstance(got, errors.InvalidArgument) and got.violations == [] and got.message == ""
    garbled = grpc.aio.Metadata(("grpc-status-details-bin", b"\xff\xff not a status"))
    odd = grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), garbled, "full")
    got = status.from_rpc_error(odd)
    assert isinstance(got, errors.ResourceExhausted) and not got.too_large and got.message == "full"


# ------------------------------------------------- over an internal channel


class Refusing(storage_service_pb2_grpc.StorageServicer):
    """Raises the domain error `errors` holds under the request's name, or
    (`downstream`) forwards the call over an internal channel and lets what
    comes back go."""

    def __init__(self, refusals: dict[str, errors.AutoMLError], downstream: str = "") -> None:
        self.refusals = refusals
        self.downstream = downstream

    async def GetDataset(self, request: dataset_pb2.GetDatasetRequest, ctx: grpc.aio.ServicerContext):
        if self.downstream:
            async with channels.connect(self.downstream, SETTINGS, internal.credentials()) as channel:
                return await storage_service_pb2_grpc.StorageStub(channel).GetDataset(request)
        raise self.refusals[request.name]

    async def DownloadDataset(self, request, ctx) -> AsyncIterator[dataset_pb2.DownloadDatasetResponse]:
        yield dataset_pb2.DownloadDatasetResponse(chunk=b"first")
        raise self.refusals[request.name]

    async def UploadDataset(self, request_iterator, ctx):
        async for message in request_iterator:
            raise self.refusals[message.header.display_name]
        return dataset_pb2.Dataset()


class RefusingRunner(runner_service_pb2_grpc.RunnerServicer):
    def __init__(self, refusals: dict[str, errors.AutoMLError]) -> None:
        self.refusals = refusals

    async def PredictStream(self, request_iterator, ctx) -> AsyncIterator[model_pb2.PredictStreamResponse]:
        async for message in request_iterator:
            yield model_pb2.PredictStreamResponse()
            raise self.refusals[message.header.name]


async def serve(storage: Refusing, runner: RefusingRunner | None = None) -> Server:
    def register(server: grpc.aio.Server) -> None:
        storage_service_pb2_grpc.add_StorageServicer_to_server(storage, server)
        if runner is not None:
            runner_service_pb2_grpc.add_RunnerServicer_to_server(runner, server)

    definition = ServiceDefinition(
        name="test",
        descriptors=(
            storage_service_pb2.DESCRIPTOR.services_by_name["Storage"],
            runner_service_pb2.DESCRIPTOR.services_by_name["Runner"],
        ),
        port=0,
        register=register,
    )
    server = make_server(definition, SETTINGS, port=0)
    await server.start()
    return server


@pytest.fixture
async def refusals() -> AsyncIterator[tuple[dict[str, errors.AutoMLError], grpc.aio.Channel]]:
    table: dict[str, errors.AutoMLError] = {}
    server = await serve(Refusing(table), RefusingRunner(table))
    try:
        async with channels.connect(f"127.0.0.1:{server.port}", SETTINGS, internal.credentials()) as channel:
            yield table, channel
    finally:
        await server.stop(0)


@pytest.mark.parametrize("sent", examples(), ids=ids)
async def test_a_call_of_each_kind_raises_the_domain_error_it_was_refused_with(refusals, sent):
    table, channel = refusals
    table["datasets/x"] = sent
    storage = storage_service_pb2_grpc.StorageStub(channel)
    runner = runner_service_pb2_grpc.RunnerStub(channel)

    with pytest.raises(errors.AutoMLError) as unary:
        await storage.GetDataset(dataset_pb2.GetDatasetRequest(name="datasets/x"))
    assert_same_domain_error(unary.value, sent)

    received = []
    with pytest.raises(errors.AutoMLError) as server_stream:
        async for message in storage.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name="datasets/x")):
            received.append(message.chunk)
    assert received == [b"first"]
    assert_same_domain_error(server_stream.value, sent)

    async def upload() -> AsyncIterator[dataset_pb2.UploadDatasetRequest]:
        yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name="datasets/x"))

    with pytest.raises(errors.AutoMLError) as client_stream:
        await storage.UploadDataset(upload())
    assert_same_domain_error(client_stream.value, sent)

    async def rows() -> AsyncIterator[model_pb2.PredictStreamRequest]:
        yield model_pb2.PredictStreamRequest(header=model_pb2.PredictStreamHeader(name="datasets/x"))

    with pytest.raises(errors.AutoMLError) as both_streams:
        async for _ in runner.PredictStream(rows()):
            pass
    assert_same_domain_error(both_streams.value, sent)


async def test_the_call_object_is_grpcs_and_code_that_catches_aio_rpc_errors_still_does(refusals):
    table, channel = refusals
    table["datasets/x"] = errors.NotFound("datasets/x does not exist")
    stub = storage_service_pb2_grpc.StorageStub(channel)
    call = stub.GetDataset(dataset_pb2.GetDatasetRequest(name="datasets/x"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND and caught.value.details() == "datasets/x does not exist"
    assert await call.code() is grpc.StatusCode.NOT_FOUND
    assert await call.details() == "datasets/x does not exist"
    assert any(key == "grpc-status-details-bin" for key, _ in await call.trailing_metadata())
    stream = stub.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name="datasets/x"))
    assert (await stream.read()).chunk == b"first"
    with pytest.raises(errors.NotFound):
        await stream.read()


# ---------------------------------------------------------- pass-through


def details_bin(error: grpc.aio.AioRpcError) -> bytes:
    return dict(error.trailing_metadata())["grpc-status-details-bin"]


@pytest.mark.parametrize("sent", [*examples(), Slow("come back later")], ids=ids)
async def test_a_downstream_error_let_go_reaches_the_caller_as_the_downstream_sent_it(sent):
    table: dict[str, errors.AutoMLError] = {"datasets/x": sent}
    leaf = await serve(Refusing(table))
    front = await serve(Refusing(table, downstream=f"127.0.0.1:{leaf.port}"))
    try:
        request = dataset_pb2.GetDatasetRequest(name="datasets/x")
        metadata = [("x-request-id", "chain-1")]
        answers = []
        for server in (leaf, front):
            async with internal.aio_channel(f"127.0.0.1:{server.port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await storage_service_pb2_grpc.StorageStub(channel).GetDataset(request, metadata=metadata)
            answers.append(caught.value)
        direct, through = answers
        assert through.code() is direct.code() is status.code_of(sent)
        assert through.details() == direct.details()
        assert details_bin(through) == details_bin(direct)  # violations, reasons, request id, retry delay
        if isinstance(sent, Slow):
            rich = status_pb2.Status.FromString(details_bin(through))
            info = error_details_pb2.RetryInfo()
            assert any(d.Unpack(info) for d in rich.details if d.Is(info.DESCRIPTOR))
            assert info.retry_delay == duration_pb2.Duration(seconds=7)
    finally:
        await front.stop(0)
        await leaf.stop(0)
