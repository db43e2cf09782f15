"""Storage and notifier as real processes, runs to publish events for, and a
loopback HTTP receiver for webhooks."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from automl.common import identity
from automl.v1 import (
    common_pb2,
    dataset_pb2,
    experiment_pb2,
    notifier_service_pb2_grpc,
    run_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from tests import internal
from tests.conftest import ROOT, spawn, suite_env, wait_serving

NOTIFIER_ENV = {
    "AUTOML_SUBSCRIBER_QUEUE": "1000",
    "AUTOML_HEARTBEAT_SECONDS": "0.5",
    "AUTOML_WEBHOOK_MAX_ATTEMPTS": "3",
    "AUTOML_WEBHOOK_BACKOFF_SECONDS": "0.1",
    # The test receivers listen on 127.0.0.1, which webhooks may not reach by default.
    "AUTOML_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
}


@dataclass
class Services:
    env: dict[str, str]
    logs: Path
    storage: subprocess.Popen[bytes]
    notifier: subprocess.Popen[bytes] | None = None

    @property
    def storage_target(self) -> str:
        return f"127.0.0.1:{self.env['AUTOML_STORAGE_PORT']}"

    @property
    def notifier_target(self) -> str:
        return f"127.0.0.1:{self.env['AUTOML_NOTIFIER_PORT']}"

    def start_notifier(self) -> None:
        log = self.logs / "notifier.log"
        self.notifier = spawn("services.notifier", self.env, log)
        wait_serving(self.notifier_target, "automl.v1.Notifier", self.notifier, log=log)

    def stop_notifier(self) -> int:
        assert self.notifier is not None
        self.notifier.terminate()
        return self.notifier.wait(timeout=20)

    def aio_notifier(self) -> tuple[grpc.aio.Channel, notifier_service_pb2_grpc.NotifierStub]:
        channel = internal.aio_channel(self.notifier_target, identity.RUNNER)
        return channel, notifier_service_pb2_grpc.NotifierStub(channel)

    def new_run(self, tenant: str = "default") -> run_pb2.Run:
        """A dataset, an experiment and a PENDING run in storage."""
        metadata = [("x-automl-tenant", tenant)]
        with internal.channel(self.storage_target, identity.RUNNER) as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            data = b"x,y\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(40))
            requests = iter(
                [
                    dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name="d")),
                    dataset_pb2.UploadDatasetRequest(chunk=data),
                ]
            )
            dataset = stub.UploadDataset(requests, metadata=metadata, timeout=30)
            experiment = stub.CreateExperiment(
                experiment_pb2.CreateExperimentRequest(
                    experiment=experiment_pb2.Experiment(dataset=dataset.name, target_column="y")
                ),
                metadata=metadata,
                timeout=30,
            )
            return stub.CreateRun(
                storage_service_pb2.CreateRunRequest(
                    run=run_pb2.Run(experiment=experiment.name, stop_conditions=common_pb2.StopConditions(max_models=5))
                ),
                metadata=metadata,
                timeout=30,
            )


def start_services(tmp: Path, extra: dict[str, str]) -> Services:
    env = suite_env(tmp) | NOTIFIER_ENV | extra
    log = tmp / "storage.log"
    storage = spawn("services.storage", env, log)
    services = Services(env, tmp, storage)
    wait_serving(services.storage_target, "automl.v1.Storage", storage, log=log)
    services.start_notifier()
    return services


def stop_services(services: Services) -> None:
    for proc in (services.notifier, services.storage):
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    running = start_services(tmp_path_factory.mktemp("notifier"), {})
    try:
        yield running
    finally:
        stop_services(running)


@pytest.fixture
def own_services(tmp_path: Path) -> Iterator[Services]:
    """A private pair, for tests that restart the notifier."""
    running = start_services(tmp_path, {})
    try:
        yield running
    finally:
        stop_services(running)


# ------------------------------------------------------------ webhook receiver


@dataclass
class Attempt:
    delivery: int  # the X-AutoML-Delivery header: the event's global sequence
    body: bytes
    headers: dict[str, str]
    status: int  # what the receiver answered


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and fails the first
    `failures[n]` attempts at delivering the n-th distinct event (None: fails them all)."""

    failures: dict[int, int | None] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            delivery = int(headers["x-automl-delivery"])
            deliveries = list(dict.fromkeys([a.delivery for a in self.attempts] + [delivery]))
            tries = sum(1 for a in self.attempts if a.delivery == delivery)
            allowed = self.failures.get(deliveries.index(delivery) + 1, 0)
            status = 500 if allowed is None or tries < allowed else 204
            self.attempts.append(Attempt(delivery, body, headers, status))
            return status

    def accepted(self) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if a.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(state.handle(body, {k.lower(): v for k, v in self.headers.items()}))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def readme_verify() -> Callable[[str, str, bytes], bool]:
    """The `verify` function docs/events.md shows receivers, run as written there."""
    doc = (ROOT / "docs" / "events.md").read_text()
    snippet = re.search(r"Verify a delivery in Python:\n\n  ```python\n(.*?)\n  ```", doc, re.S)
    assert snippet, "docs/events.md: the receivers' verification snippet is missing"
    namespace: dict[str, object] = {}
    exec(re.sub(r"^  ", "", snippet.group(1), flags=re.M), namespace)
    return namespace["verify"]  # type: ignore[return-value]
