"""The webhook address check, the resolver step, the pinned connection, error
classes, signatures and sealed secrets, as plain functions. Nothing here
sends a packet anywhere but 127.0.0.1: other addresses only go through the
check, fake resolvers answer the lookups, and a mock transport takes the
requests that would leave the machine."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from automl.common.settings import Settings, SettingsError
from services.notifier import webhooks
from services.notifier.sealing import KEY_FILE, SecretBox, Unreadable, secret_key
from services.notifier.targets import BadURL, Guard, LookupFailed, TargetRefused, is_local_address, kind, parse
from services.notifier.webhooks import post, sign
from tests.notifier.conftest import readme_verify
from tests.ports import free_port

ip = ipaddress.ip_address
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


@dataclass
class FakeDNS:
    """Answers lookups from a table: each host's answers in turn, the last one
    repeated. Records every lookup."""

    answers: dict[str, list[list[str]]]
    calls: list[str] = field(default_factory=list)

    async def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def no_dns() -> FakeDNS:
    return FakeDNS({})  # any lookup fails the test (KeyError)


# ------------------------------------------------------------- address kinds


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),  # deprecated site-local, still routed inside some networks
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "reserved"),  # carrier-grade NAT
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),  # documentation
        # IPv4 inside IPv6 is judged as the IPv4 address it reaches.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", "link-local"),
        ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
        # Public: allowed.
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("172.15.255.255", None),
        ("172.32.0.1", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_kinds_of_addresses(address, expected):
    assert kind(ip(address)) == expected


def test_an_allow_list_admits_networks_but_never_the_suites_own_services():
    guard = Guard(allow=LOOPBACK, own_ports=frozenset({50052, 8080}), is_local=lambda a: False)
    assert guard.refusal(ip("127.0.0.1"), 9000) is None, "allow-listed"
    assert guard.refusal(ip("::ffff:127.0.0.1"), 9000) is None, "the same address, IPv4-mapped"
    for address, port in [("127.0.0.1", 50052), ("::ffff:127.0.0.1", 8080), ("127.0.0.2", 50052), ("::1", 50052)]:
        refused = guard.refusal(ip(address), port)
        assert refused is not None and refused.own, (address, port)
    for address in ("0.0.0.0", "::"):  # connecting to "any" reaches this machine
        assert guard.refusal(ip(address), 50052).own
    assert str(guard.refusal(ip("127.0.0.2"), 9000)) == "a loopback address", "outside the /32"
    assert str(guard.refusal(ip("::1"), 9000)) == "a loopback address", "an IPv4 network admits no IPv6"
    assert str(guard.refusal(ip("10.0.0.1"), 9000)) == "a private address"


def test_the_suites_hosts_elsewhere_are_its_own_too():
    private = (ipaddress.ip_network("10.0.0.0/8"),)
    local = ip("10.0.0.9")
    guard = Guard(allow=private, own_ports=frozenset({50052}), is_local=lambda a: a == local)
    assert guard.refusal(ip("10.0.0.5"), 50052, own={ip("10.0.0.5")}).own, "storage's host"
    assert guard.refusal(local, 50052).own, "this machine's own address"
    assert guard.refusal(ip("10.0.0.6"), 50052, own={ip("10.0.0.5")}) is None, "another host, same port"
    assert guard.refusal(ip("10.0.0.5"), 9000, own={ip("10.0.0.5")}) is None, "another port of that host"


def test_local_addresses_are_found_without_sending_anything():
    assert is_local_address(ip("127.0.0.1")) and is_local_address(ip("127.3.2.1"))
    assert not is_local_address(ip("192.0.2.77"))  # TEST-NET-1: no machine has it


def test_the_guard_knows_the_suites_ports_and_hosts():
    settings = Settings(
        gateway_port=1001,
        storage_port=1002,
        runner_port=1003,
        notifier_port=1004,
        http_port=1005,
        storage_target="storage:50052",
        runner_target="runner:50053",
        s3_endpoint="minio:9000",
        dask_scheduler="tcp://dask-scheduler:8786",
        webhook_allow_networks="10.20.0.0/16, 127.0.0.1",
    )
    guard = Guard.from_settings(settings)
    assert guard.own_ports == {1001, 1002, 1003, 1004, 1005, 50052, 50053, 9000, 8786}
    assert set(guard.own_hosts) == {"127.0.0.1", "storage", "runner", "minio", "dask-scheduler"}
    assert guard.allow == (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("127.0.0.1/32"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTOML_WEBHOOK_ALLOW_NETWORKS": "10.0.0.0/33"}, "AUTOML_WEBHOOK_ALLOW_NETWORKS=10.0.0.0/33: "),
        ({"AUTOML_WEBHOOK_ALLOW_NETWORKS": "localhost"}, "AUTOML_WEBHOOK_ALLOW_NETWORKS=localhost: "),
        ({"AUTOML_WEBHOOK_SECRET_KEY": "short"}, "AUTOML_WEBHOOK_SECRET_KEY: use 32 characters or more"),
    ],
)
def test_bad_webhook_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)


# ------------------------------------------------------------- resolver step


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "http://",
        "http:///path",
        "file:///etc/passwd",
        "http://a b/",
        "http://[::1/",
        "x",
        "http://example.com:0/",
        "http://example.com:70000/",
    ],
)
async def test_urls_that_cannot_be_targets_are_refused_before_any_lookup(url):
    guard = Guard(resolve=no_dns())
    with pytest.raises(BadURL):
        await guard.check(url)


async def test_every_resolved_address_is_checked():
    dns = FakeDNS({"mixed.example": [["93.184.216.34", "10.0.0.1"]], "public.example": [["93.184.216.34"]]})
    guard = Guard(resolve=dns)
    with pytest.raises(TargetRefused) as caught:
        await guard.check("https://mixed.example/hook")
    assert str(caught.value) == "mixed.example resolves to a private address"
    assert "10.0.0.1" not in str(caught.value), "the tenant does not learn internal addresses"
    target = await guard.check("https://public.example/hook")
    assert target.address == ip("93.184.216.34")


async def test_dns_rebinding_is_caught_at_delivery():
    dns = FakeDNS({"rebind.example": [["93.184.216.34"], ["169.254.169.254"]]})
    guard = Guard(resolve=dns)
    first = await guard.check("http://rebind.example/hook")  # at creation: a public address
    assert first.address == ip("93.184.216.34")
    with pytest.raises(TargetRefused, match="link-local"):
        await guard.check("http://rebind.example/hook")  # the next lookup: metadata
    assert dns.calls == ["rebind.example", "rebind.example"], "one lookup per check"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/",
        "http://[::1]:9000/",
        "http://[::ffff:127.0.0.1]:9000/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0:9000/",
    ],
)
async def test_ip_literals_are_checked_without_a_lookup(url):
    guard = Guard(resolve=no_dns())
    with pytest.raises(TargetRefused) as caught:
        await guard.check(url)
    assert " is a " in str(caught.value)


async def test_numeric_host_forms_resolve_to_what_they_are():
    # 2130706433 and 0x7f.1 are 127.0.0.1 to getaddrinfo (no DNS query for them).
    guard = Guard()
    for url in ("http://2130706433:9000/", "http://0x7f.1:9000/"):
        with pytest.raises(TargetRefused, match="resolves to a loopback address"):
            await guard.check(url)


async def test_localhost_is_loopback():
    with pytest.raises(TargetRefused, match="localhost:9000 resolves to a loopback address"):
        await Guard().check("http://localhost:9000/")


async def test_the_suites_own_ports_are_refused_on_the_suites_hosts():
    dns = FakeDNS({"storage": [["10.0.0.5"]], "hooks.internal": [["10.0.0.5"]]})
    guard = Guard(
        allow=(ipaddress.ip_network("10.0.0.0/8"),),
        own_ports=frozenset({50052}),
        own_hosts=("storage",),
        resolve=dns,
        is_local=lambda a: False,
    )
    with pytest.raises(TargetRefused) as caught:
        await guard.check("http://hooks.internal:50052/")
    assert caught.value.own and str(caught.value) == "hooks.internal:50052 resolves to one of this suite's own services"
    assert (await guard.check("http://hooks.internal:8000/")).address == ip("10.0.0.5")


@pytest.mark.parametrize(
    ("failure", "temporary"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), False),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), True),
    ],
)
async def test_lookup_failures_say_whether_to_try_again(failure, temporary):
    async def resolve(host: str) -> list[str]:
        raise failure

    with pytest.raises(LookupFailed) as caught:
        await Guard(resolve=resolve).check("http://nowhere.example/")
    assert caught.value.temporary is temporary


async def test_a_lookup_that_hangs_times_out():
    async def resolve(host: str) -> list[str]:
        await asyncio.sleep(10)
        return []

    with pytest.raises(LookupFailed) as caught:
        await Guard(resolve=resolve, dns_timeout=0.05).check("http://slow.example/")
    assert caught.value.temporary


def test_parse_reads_the_url_as_httpx_sends_it():
    url, host, port = parse("https://user:pw@Bücher.example/hook?x=1")
    assert (host, port) == ("xn--bcher-kva.example", 443)
    assert url.scheme == "https"
    assert parse("http://[::1]:8080/")[1:] == ("::1", 8080)


# ------------------------------------------------- the pinned connection


def mock_client(answer: int = 204) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """A client whose requests go nowhere: the mock transport answers them."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answer)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler)), seen


async def test_a_delivery_connects_to_the_checked_address_with_the_original_host():
    dns = FakeDNS({"hooks.example.com": [["93.184.216.34"], ["10.0.0.7"]]})
    client, seen = mock_client()
    guard = Guard(resolve=dns)
    url = "https://hooks.example.com:8443/in?x=1"
    async with client:
        outcome = await post(client, guard, url, b"{}", {"X-AutoML-Delivery": "7"})
        assert outcome.error == ""
        (request,) = seen
        assert request.url.host == "93.184.216.34" and request.url.port == 8443
        assert request.url.raw_path == b"/in?x=1" and request.url.scheme == "https"
        assert request.headers["host"] == "hooks.example.com:8443"
        assert request.extensions["sni_hostname"] == "hooks.example.com", "TLS checks the host name, not the address"
        assert request.headers["x-automl-delivery"] == "7"
        # The next attempt resolves again, to a private address: nothing is sent.
        rebound = await post(client, guard, url, b"{}", {})
    assert rebound.error == webhooks.ADDRESS and "10.0.0.7" not in rebound.error
    assert len(seen) == 1, "no request after the refusal"
    assert dns.calls == ["hooks.example.com", "hooks.example.com"]


async def test_an_http_error_is_stored_as_its_status_only():
    client, _ = mock_client(404)
    guard = Guard(resolve=FakeDNS({"hooks.example.com": [["93.184.216.34"]]}))
    async with client:
        outcome = await post(client, guard, "https://hooks.example.com/", b"{}", {})
    assert outcome.error == "HTTP 404"


async def test_a_closed_port_is_connection_refused_with_no_detail_for_the_tenant():
    guard = Guard(allow=LOOPBACK)
    async with httpx.AsyncClient(trust_env=False) as client:
        outcome = await post(client, guard, f"http://127.0.0.1:{free_port()}/hook", b"{}", {})
    assert outcome.error == "connection refused"
    assert "ConnectError" in outcome.detail, "the detail is for the log"


async def test_a_receiver_that_never_answers_is_a_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        port = silent.getsockname()[1]
        async with httpx.AsyncClient(trust_env=False, timeout=0.3) as client:
            outcome = await post(client, Guard(allow=LOOPBACK), f"http://127.0.0.1:{port}/", b"{}", {})
    assert outcome.error == "timeout"


def test_error_classes_follow_the_cause():
    def raised(exc: BaseException, cause: BaseException) -> BaseException:
        exc.__cause__ = cause
        return exc

    refused = ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 22)")
    chained = raised(httpx.ConnectError("x"), raised(OSError("all connection attempts failed"), refused))
    assert webhooks.classify(chained) == "connection refused"
    grouped = raised(httpx.ConnectError("x"), ExceptionGroup("attempts", [refused]))
    assert webhooks.classify(grouped) == "connection refused"
    bad_cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert webhooks.classify(raised(httpx.ConnectError("x"), bad_cert)) == "TLS error"
    assert webhooks.classify(httpx.ReadTimeout("x")) == "timeout"
    assert webhooks.classify(TimeoutError()) == "timeout"
    assert webhooks.classify(httpx.RemoteProtocolError("x")) == "connection failed"
    dns = socket.gaierror(socket.EAI_NONAME, "no")
    assert webhooks.classify(raised(httpx.ConnectError("x"), dns)) == "DNS error"


# ----------------------------------------- TLS: SNI and certificate on a pin


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@dataclass
class TLSReceiver:
    port: int
    server_names: list[str | None]  # SNI of each handshake
    hosts: list[str]  # Host header of each request


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[TLSReceiver, Path]]:
    """An HTTPS server on 127.0.0.1 whose certificate is for receiver.test."""
    cert_file, key_file = certificate(tmp_path, "receiver.test")
    names: list[str | None] = []
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            hosts.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield TLSReceiver(server.server_address[1], names, hosts), cert_file
    server.shutdown()
    server.server_close()


async def test_tls_to_a_pinned_address_checks_the_url_host_name(tls_receiver):
    receiver, cert_file = tls_receiver
    dns = FakeDNS({"receiver.test": [["127.0.0.1"]], "impostor.test": [["127.0.0.1"]]})
    guard = Guard(allow=LOOPBACK, resolve=dns)
    trust = ssl.create_default_context(cafile=str(cert_file))
    async with httpx.AsyncClient(trust_env=False, verify=trust) as client:
        good = await post(client, guard, f"https://receiver.test:{receiver.port}/hook", b"{}", {})
        assert good.error == ""
        assert receiver.server_names == ["receiver.test"], "SNI names the URL's host, not 127.0.0.1"
        assert receiver.hosts == [f"receiver.test:{receiver.port}"]
    async with httpx.AsyncClient(trust_env=False, verify=trust) as client:
        # Same address, another name: the certificate (for receiver.test) does not fit it.
        bad = await post(client, guard, f"https://impostor.test:{receiver.port}/hook", b"{}", {})
    assert bad.error == "TLS error" and "certificate" in bad.detail.lower()
    assert receiver.hosts == [f"receiver.test:{receiver.port}"], "nothing was sent to the impostor"


# ------------------------------------------------------------------ signing


def test_the_signature_covers_timestamp_and_body_and_the_readme_checks_it():
    secret = secrets.token_urlsafe(32)
    body = b'{"run":"runs/1"}'
    verify = readme_verify()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    assert verify(secret, sign(secret, body, now), body)
    assert verify(secret, sign(secret, body, now - webhooks.SIGNATURE_TOLERANCE_SECONDS + 5), body)
    assert not verify(secret, sign(secret, body, now - webhooks.SIGNATURE_TOLERANCE_SECONDS - 5), body), "replay"
    assert not verify(secret, sign(secret, body, now + webhooks.SIGNATURE_TOLERANCE_SECONDS + 5), body)
    assert not verify(secret, sign(secret, body, now), body + b" ")
    assert not verify("another secret", sign(secret, body, now), body)
    forged = sign(secret, body, now - 3600).replace(f"t={now - 3600}", f"t={now}")
    assert not verify(secret, forged, body), "the timestamp is signed: it cannot be refreshed"
    for junk in ("", "v1=abc", f"t=abc,v1={'0' * 64}", f"t={now},v1=é", "t=²,v1=0"):
        assert not verify(secret, junk, body)
    expected = hmac.new(b"k", b"1700000000.body", hashlib.sha256).hexdigest()
    assert sign("k", b"body", 1700000000) == f"t=1700000000,v1={expected}"


# ----------------------------------------------------------- sealed secrets


def test_secrets_are_sealed_and_opened():
    box = SecretBox(b"k" * 32)
    secret = secrets.token_urlsafe(32)
    sealed = box.seal(secret)
    assert sealed.startswith("v1:") and secret not in sealed
    assert len(sealed) <= 128, "fits storage's webhook_secret column"
    assert box.seal(secret) != sealed, "a fresh nonce each time"
    assert box.open(sealed) == secret
    assert box.open(secret) == secret, "a secret stored before sealing existed reads as it is"
    with pytest.raises(Unreadable):
        SecretBox(b"x" * 32).open(sealed)
    # A character well inside the ciphertext: the last ones may carry padding bits that decoding ignores.
    middle = len(sealed) // 2
    tampered = sealed[:middle] + ("A" if sealed[middle] != "A" else "B") + sealed[middle + 1 :]
    with pytest.raises(Unreadable):
        box.open(tampered)


def test_the_key_comes_from_the_setting_or_a_file_made_once(tmp_path):
    assert secret_key(Settings(data_dir=tmp_path, webhook_secret_key="s" * 40)) == b"s" * 40
    assert not (tmp_path / KEY_FILE).exists()
    settings = Settings(data_dir=tmp_path / "data")
    first = secret_key(settings)
    assert len(first) >= 32 and secret_key(settings) == first
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "readable by the notifier's user only"
    box, again = SecretBox.from_settings(settings), SecretBox.from_settings(settings)
    assert again.open(box.seal("secret")) == "secret"
