"""The storage service in-process over real gRPC, on every backend pair.

Every test that takes `storage` runs once per backend: SQLite with a local
blob folder, and PostgreSQL with an S3 server (rclone). Set
AUTOML_TEST_MSSQL_URL to add SQL Server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from minio import Minio
from sqlalchemy import func, select, text

from automl.common import identity
from automl.common.server import make_server
from automl.common.settings import Settings
from automl.v1 import storage_service_pb2_grpc
from services.storage import schema
from services.storage.db import make_engine
from services.storage.server import build, make_servicer
from tests import internal

BACKENDS = ["sqlite+file", "postgresql+s3"]
if os.environ.get("AUTOML_TEST_MSSQL_URL"):
    BACKENDS.append("mssql+file")


@dataclass
class Harness:
    stub: storage_service_pb2_grpc.StorageStub
    settings: Settings
    servicer: object
    minio: Minio | None
    bucket: str

    def blob_keys(self) -> list[str]:
        """Every committed blob (and, for the folder store, every temp file)."""
        if self.minio is not None:
            return sorted(o.object_name for o in self.minio.list_objects(self.bucket, recursive=True))
        root = Path(self.settings.blobs.removeprefix("file://"))
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def count(self, table: type[schema.Base]) -> int:
        engine = self.servicer.store.engine  # type: ignore[attr-defined]
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(table)) or 0

    def tenant(self, name: str) -> list[tuple[str, str]]:
        """Metadata of a call for tenant `name`; "*" (every tenant) as the supervisor, who alone may."""
        speaker = internal.credentials(identity.SUPERVISOR).metadata() if name == identity.ALL_TENANTS else []
        return [("x-automl-tenant", name), *speaker]


@pytest.fixture(params=BACKENDS)
def storage_settings(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Settings, Minio | None, str]:
    database, blobs = request.param.split("+")
    env = {"AUTOML_DATA_DIR": str(tmp_path / "data"), "AUTOML_INTERNAL_SECRET": internal.SECRET}
    minio = None
    bucket = ""
    if database == "postgresql":
        env["AUTOML_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    elif database == "mssql":
        env["AUTOML_DATABASE_URL"] = os.environ["AUTOML_TEST_MSSQL_URL"]
        _empty_database(env["AUTOML_DATABASE_URL"])
    if blobs == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        env |= {
            "AUTOML_BLOB_URL": f"s3://{bucket}",
            "AUTOML_S3_ENDPOINT": server.endpoint,
            "AUTOML_S3_ACCESS_KEY": server.access_key,
            "AUTOML_S3_SECRET_KEY": server.secret_key,
        }
        minio = Minio(server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False)
    return Settings.from_env(env), minio, bucket


@pytest.fixture
async def storage(storage_settings) -> AsyncIterator[Harness]:
    settings, minio, bucket = storage_settings
    servicer = make_servicer(settings)
    server = make_server(build(settings, servicer), settings, port=0)
    await server.start()
    channel = internal.aio_channel(
        f"127.0.0.1:{server.port}",
        identity.GATEWAY,
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    try:
        yield Harness(storage_service_pb2_grpc.StorageStub(channel), settings, servicer, minio, bucket)
    finally:
        await channel.close()
        await server.stop(0)
        servicer.store.engine.dispose()


def _empty_database(url: str) -> None:
    """A shared live database (SQL Server) starts each test empty; migrations rebuild it."""
    engine = make_engine(url)
    with engine.begin() as connection:
        schema.Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
