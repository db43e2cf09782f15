"""The gateway's edge, against real processes on loopback: failed key checks
limited per client address (over gRPC and through the HTTP door, which names
the client it served and nobody else can), metrics on a port of their own,
and HTTPS on the HTTP port with the gRPC port's certificate."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from automl.v1 import automl_service_pb2_grpc, dataset_pb2
from gateway.auth import CLIENT_ADDRESS_KEY, DOOR_TOKEN_KEY
from tests.conftest import spawn, suite_env
from tests.gateway.conftest import GatewaySuite, start_gateway_suite, stop_gateway_suite
from tests.ports import free_port

LIMIT = 3
WINDOW_SECONDS = 60


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySuite]:
    """A gateway that refuses a client after 3 failed key checks for 60 s,
    trusts a checked key for 60 s, and serves metrics on a port of their own."""
    extra = {
        "AUTOML_AUTH_MAX_FAILURES": str(LIMIT),
        "AUTOML_AUTH_FAILURE_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "AUTOML_API_KEY_CACHE_SECONDS": "60",
        "AUTOML_METRICS_PORT": str(free_port()),
    }
    running = start_gateway_suite(tmp_path_factory.mktemp("edge"), extra)
    try:
        yield running
    finally:
        stop_gateway_suite(running)


def lookups(suite: GatewaySuite) -> int:
    """LookupApiKey calls storage has served (its access log: one line each)."""
    return suite.stack.log("storage").count("Storage/LookupApiKey")


def settled_lookups(suite: GatewaySuite, expected: int) -> int:
    """The count once it reaches `expected` (a line may lag its answer), or as it is after 2 s."""
    deadline = time.monotonic() + 2
    while (count := lookups(suite)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def list_by_grpc(suite: GatewaySuite, metadata: list[tuple[str, str]]) -> grpc.RpcError | None:
    """ListDatasets over gRPC (from 127.0.0.1); the error, or None when it worked."""
    with grpc.insecure_channel(suite.target) as channel:
        try:
            automl_service_pb2_grpc.AutoMLStub(channel).ListDatasets(
                dataset_pb2.ListDatasetsRequest(), metadata=metadata, timeout=10
            )
        except grpc.RpcError as exc:
            return exc
    return None


def get(suite: GatewaySuite, path: str, authorization: str = "", source: str = "127.0.0.1") -> tuple[int, dict, dict]:
    """GET `path` on the HTTP port from the loopback address `source`: (status, headers, JSON body)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", int(suite.env["AUTOML_HTTP_PORT"]), timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers={"authorization": authorization} if authorization else {})
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, json.loads(reply.read() or b"{}")
    finally:
        connection.close()


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def test_failed_key_checks_are_limited_per_client_without_asking_storage(suite):
    good = suite.keys["alpha"]
    assert list_by_grpc(suite, bearer(good)) is None  # checked now: trusted for the cache window
    fresh = suite.new_key("alpha")["key"]  # a good key the gateway has not checked yet

    # Three unknown keys from 127.0.0.1, each checked with storage. The call
    # claims to come from the HTTP door for another address: from the public
    # port, that claim is ignored.
    forged = [(CLIENT_ADDRESS_KEY, "203.0.113.9"), (DOOR_TOKEN_KEY, "forged")]
    before = lookups(suite)
    for attempt in range(LIMIT):
        error = list_by_grpc(suite, [*bearer(f"aml_guess-{attempt}"), *forged])
        assert error is not None and error.code() is grpc.StatusCode.UNAUTHENTICATED, error
        assert "unknown API key" in error.details()
    checked = settled_lookups(suite, before + LIMIT)
    assert checked == before + LIMIT

    # The next one is refused before storage is asked, with a retry delay.
    error = list_by_grpc(suite, [*bearer("aml_guess-next"), *forged])
    assert error is not None and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
    assert "too many failed API-key checks from 127.0.0.1" in error.details()
    retry = [d for d in rpc_status.from_call(error).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert 0 < info.retry_delay.seconds <= WINDOW_SECONDS
    # So is a good key the gateway would have to ask storage about; one it
    # checked lately costs no lookup and still works.
    error = list_by_grpc(suite, bearer(fresh))
    assert error is not None and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert list_by_grpc(suite, bearer(good)) is None

    # The HTTP door names the client it served: the same 127.0.0.1, refused
    # 429 with Retry-After.
    status, headers, body = get(suite, "/v1/datasets", "Bearer aml_guess-over-http")
    assert status == 429, body
    assert body["error"]["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert 0 < int(headers["retry-after"]) <= WINDOW_SECONDS
    time.sleep(0.3)  # a lookup made by mistake would be logged by now
    assert lookups(suite) == checked, "a refused client's key was looked up"

    # Another client (127.0.0.2) is not limited: its unknown key is checked
    # (401), its good key works.
    status, _, body = get(suite, "/v1/datasets", "Bearer aml_guess-from-elsewhere", "127.0.0.2")
    assert status == 401 and "unknown API key" in body["error"]["message"], body
    status, _, body = get(suite, "/v1/datasets", f"Bearer {fresh}", "127.0.0.2")
    assert status == 200, body
    assert settled_lookups(suite, checked + 2) == checked + 2


def test_malformed_keys_count_and_missing_keys_do_not(suite):
    source = "127.0.0.3"
    for _ in range(LIMIT + 2):  # no key: refused, guesses nothing, not counted
        status, _, body = get(suite, "/v1/datasets", "", source)
        assert status == 401 and "no API key" in body["error"]["message"], body
    for _ in range(LIMIT):
        status, _, body = get(suite, "/v1/datasets", "Basic dXNlcjpwYXNz", source)
        assert status == 401 and "Bearer" in body["error"]["message"], body
    status, headers, _ = get(suite, "/v1/datasets", "Basic dXNlcjpwYXNz", source)
    assert status == 429 and "retry-after" in headers


def test_metrics_on_a_port_of_their_own(suite):
    metrics = f"http://127.0.0.1:{suite.env['AUTOML_METRICS_PORT']}"
    with urllib.request.urlopen(f"{metrics}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert 'automl_rpc_requests_total{code="OK",method="ListDatasets",service="gateway"}' in text
    with urllib.request.urlopen(f"{metrics}/healthz", timeout=5) as reply:
        assert json.loads(reply.read()) == {"status": "SERVING"}
    status, _, body = get(suite, "/metrics")
    assert status == 404 and body["error"]["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    status, _, body = get(suite, "/healthz")
    assert status == 200 and body == {"status": "SERVING"}


# ------------------------------------------------------------------- HTTPS


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, its own CA, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert, key_file = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key_file


def test_https_with_the_grpc_certificate_and_no_plain_http(tmp_path):
    cert, key = self_signed(tmp_path)
    env = suite_env(tmp_path) | {
        "AUTOML_TLS_CERT_FILE": str(cert),
        "AUTOML_TLS_KEY_FILE": str(key),
        "AUTOML_METRICS_PORT": str(free_port()),
    }
    port = int(env["AUTOML_HTTP_PORT"])
    trusted = ssl.create_default_context(cafile=str(cert))
    proc = spawn("gateway", env, tmp_path / "gateway.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=trusted) as reply:
                    assert json.loads(reply.read()) == {"status": "SERVING"}
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
                time.sleep(0.2)

        # The API over HTTPS goes through the door to the gRPC server: no key, 401.
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=trusted)
        try:
            connection.request("GET", "/v1/datasets")
            reply = connection.getresponse()
            assert reply.status == 401 and "no API key" in json.loads(reply.read())["error"]["message"]
        finally:
            connection.close()

        # Plain HTTP on that port gets no answer.
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            with pytest.raises((http.client.HTTPException, OSError)):
                plain.request("GET", "/healthz")
                plain.getresponse()
        finally:
            plain.close()

        # The gRPC port speaks TLS with the same certificate; the metrics
        # listener, for a private network, stays plain HTTP.
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{env['AUTOML_GATEWAY_PORT']}", credentials) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with urllib.request.urlopen(f"http://127.0.0.1:{env['AUTOML_METRICS_PORT']}/healthz", timeout=5) as reply:
            assert reply.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
