"""Every public RPC fuzzed over gRPC and over HTTP/JSON (issue 21), against
the four services as real processes with API keys on: requests and CSV
files generated from the proto descriptors (tests/fuzzing.py), derandomized
so that CI sees the same examples every time. bench/fuzz.py runs the same
generator at 10,000 examples per RPC and transport.

Goals checked: no INTERNAL or UNKNOWN answer over gRPC, no 5xx (nor an
INTERNAL or UNKNOWN error inside a streamed answer) over HTTP; no row left by
a refused request (see tests/fuzzing.py for the definition); at the end no
orphan blob, temporary file or contents row, no run or model left under
way, and storage's peak resident memory under its 200 MB goal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory

from tests import internal
from tests.fuzzing import FUZZ_ENV, METHODS, STORAGE_GOAL_MB, Target, make_pool
from tests.gateway.conftest import GatewaySuite, start_gateway_suite, stop_gateway_suite
from tests.runner.conftest import sklearn_csv

pytestmark = pytest.mark.slow

EXAMPLES = 100  # per RPC and transport: 200 per RPC


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySuite]:
    running = start_gateway_suite(tmp_path_factory.mktemp("fuzz"), FUZZ_ENV)
    try:
        yield running
    finally:
        stop_gateway_suite(running)


@pytest.fixture(scope="module")
def target(suite: GatewaySuite) -> Iterator[Target]:
    fuzz = None
    try:
        fuzz = Target(
            suite.target,
            suite.http,
            suite.api_key,
            Path(suite.env["AUTOML_DATA_DIR"]),
            suite.stack.procs,
        )
        fuzz.pool = make_pool(suite.client("alpha"), sklearn_csv("iris"), "target")
        yield fuzz
    finally:
        if fuzz is not None:
            fuzz.close()


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize("method", METHODS)
def test_fuzzed_calls_get_no_server_error_and_leave_nothing(target, method, transport):
    before = len(target.findings)
    report = target.fuzz(method, transport, EXAMPLES, derandomize=True)
    found = target.findings[before:]
    assert not target.dead(), f"services ended: {target.dead()}"
    assert report.examples > 0
    assert not found, (
        "\n".join(
            f"{f.kind}: {f.transport} {f.method} -> {f.status} {f.message!r}\n    request: {f.request}"
            for f in found[:5]
        )
        + f"\n({len(found)} findings; statuses {dict(report.statuses)})"
    )


@pytest.mark.parametrize("query", ["", "?displayName=x&csvOptions.encoding=base64"])
def test_an_upload_refused_at_its_header_answers_the_refusal_every_time(target, query):
    """Never the 500 a grpc.aio client (the HTTP door's) reports when a send
    meets a call the server already ended (grpc/grpc#36066): the gateway reads
    the rest of a refused client stream before it answers. It was 1 in 200."""
    statuses = Counter()
    for _ in range(300):
        reply = target.http.post(
            f"/v1/datasets:upload{query}",
            content=b"a,b\n1,2\n" * 2000,
            headers={"Authorization": f"Bearer {target.key}"},
        )
        statuses[reply.status_code] += 1
    assert statuses == {400: 300}


def test_nothing_orphaned_nothing_under_way_and_storage_memory_bounded(target):
    """After every fuzzed call: no blob, temp file or contents row that nothing
    owns; no run or model still under way (started runs were stopped at once);
    storage's peak RSS under its goal."""
    busy = target.settle(timeout=90)
    assert not busy, busy
    orphans = target.orphans()
    assert not any(orphans.values()), orphans
    peak = target.storage_peak_mb()
    assert peak < STORAGE_GOAL_MB, f"storage peak RSS {peak:.0f} MB (goal {STORAGE_GOAL_MB} MB)"


GARBAGE = b"\xff\xff\xff\xff"  # field 0 or a varint that never ends: no message parses it
"""A client that sends bytes no protobuf parser takes as the request message."""


def _valid(method: str, **fields: object) -> bytes:
    service, name = method.strip("/").split("/")
    pool = descriptor_pool.Default()
    cls = message_factory.GetMessageClass(pool.FindMethodByName(f"{service}.{name}").input_type)
    return cls(**fields).SerializeToString()


GARBLED_CALLS = [
    # (service, method, kind, messages): the garbage first, or after valid messages
    ("gateway", "/automl.v1.AutoML/GetDataset", "unary_unary", [GARBAGE]),
    ("gateway", "/automl.v1.AutoML/DownloadDataset", "unary_stream", [GARBAGE]),
    ("gateway", "/automl.v1.AutoML/UploadDataset", "stream_unary", [GARBAGE]),
    ("gateway", "/automl.v1.AutoML/UploadDataset", "stream_unary", ["header", GARBAGE, "chunk"]),
    ("gateway", "/automl.v1.AutoML/UploadDataset", "stream_unary", ["header", "chunk", GARBAGE]),
    ("gateway", "/automl.v1.AutoML/PredictStream", "stream_stream", [GARBAGE]),
    ("gateway", "/automl.v1.AutoML/PredictStream", "stream_stream", ["header", GARBAGE]),
    ("storage", "/automl.v1.Storage/GetRun", "unary_unary", [GARBAGE]),
    ("storage", "/automl.v1.Storage/UploadDataset", "stream_unary", [GARBAGE]),
    ("storage", "/automl.v1.Storage/UploadDataset", "stream_unary", ["header", "chunk", GARBAGE, "chunk"]),
    ("storage", "/automl.v1.Storage/WriteArtifact", "stream_unary", ["header", GARBAGE]),
    ("runner", "/automl.v1.Runner/GetRunnerStatus", "unary_unary", [GARBAGE]),
    ("runner", "/automl.v1.Runner/PredictStream", "stream_stream", [GARBAGE]),
    ("notifier", "/automl.v1.Notifier/Publish", "unary_unary", [GARBAGE]),
    ("notifier", "/automl.v1.Notifier/StreamEvents", "unary_stream", [GARBAGE]),
]


def _message(method: str, what: bytes | str) -> bytes:
    if isinstance(what, bytes):
        return what
    if what == "chunk":
        return _valid(method, chunk=b"a,b\n1,2\n")
    if "PredictStream" in method:
        return _valid(method, header={"name": "trainedModels/x"})
    if "WriteArtifact" in method:
        return _valid(method, header={"kind": "model/joblib"})
    return _valid(method, header={"display_name": "garbled"})


@pytest.mark.parametrize(("service", "method", "kind", "sent"), GARBLED_CALLS, ids=lambda v: str(v)[:40])
async def test_bytes_that_are_no_request_message_are_invalid_argument(suite, service, method, kind, sent):
    """Not UNKNOWN with the parser's text (unary), INTERNAL (a client stream's
    first message), or a hang (a later one): INVALID_ARGUMENT naming the
    message type, on the public port and on each internal service."""
    if service == "gateway":
        channel = grpc.aio.insecure_channel(suite.target)
        metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {suite.api_key}"),)
    else:
        channel = internal.aio_channel(suite.stack.target(service))
        metadata = ()
    messages = [_message(method, what) for what in sent]
    async with channel:
        call = getattr(channel, kind)(method, request_serializer=None, response_deserializer=None)

        async def stream():
            for message in messages:
                yield message

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            if kind.startswith("unary"):
                answer = call(messages[0], metadata=metadata, timeout=30)
            else:
                answer = call(stream(), metadata=metadata, timeout=30)
            if kind.endswith("stream"):
                async for _ in answer:
                    pass
            else:
                await answer
    name = descriptor_pool.Default().FindMethodByName(method.strip("/").replace("/", ".")).input_type.full_name
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (caught.value.code(), caught.value.details())
    assert caught.value.details() == f"the request is not a valid {name} message"
