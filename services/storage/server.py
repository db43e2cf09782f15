"""How the storage process is put together: the database (waited for while
its server starts, created if missing, migrated to head), the blob store
(checked, its bucket created if missing), the servicer, and the sweeper of
what a crash left in the blob store."""

from __future__ import annotations

import logging

from automl.common import errors, logs
from automl.common.server import ServiceDefinition, lifespan
from automl.common.settings import Settings
from automl.v1 import storage_service_pb2, storage_service_pb2_grpc
from services.storage import db
from services.storage.blobs import open_blob_store
from services.storage.repository import MetadataStore
from services.storage.servicer import StorageServicer
from services.storage.sweeper import Sweeper

log = logging.getLogger("automl.storage")

# An upload runs at the pace of its CSV profile, slower than a client can send.
# With gRPC's bandwidth-delay probing the server's receive window grew to hold
# several MB of messages nobody reads yet (1 GiB upload: peak RSS 184-192 ->
# 175-180 MB without it, same throughput on loopback). Without it a stream's
# window still opens to the whole message the server waits for (1 MiB chunks);
# across a network that costs a round trip per message at most.
UPLOAD_FLOW_CONTROL: tuple[tuple[str, int], ...] = (("grpc.http2.bdp_probe", 0),)


def make_servicer(settings: Settings, *, migrate_in_child: bool = False) -> StorageServicer:
    """The servicer over the configured database (migrated) and blob store (checked).
    `migrate_in_child`: run the migrations in a child interpreter (the storage
    process does, to keep Alembic's imports out of its memory)."""
    try:
        db.prepare(settings.database, settings.database_wait_seconds)
    except db.DatabaseUnavailable as exc:
        raise SystemExit(f"storage: {exc}") from None
    engine = db.make_engine(settings.database)
    if settings.migrate_on_start:
        if migrate_in_child:
            try:
                db.upgrade_in_child(settings.database)
            except db.MigrationFailed as exc:
                raise SystemExit(f"storage: {exc}") from None
        else:
            db.upgrade(engine)
        log.info("database schema at head", extra={"database": engine.url.render_as_string(hide_password=True)})
    blobs = open_blob_store(settings.blobs, settings)
    try:
        blobs.check()
    except errors.Unavailable as exc:
        raise SystemExit(f"storage: {exc}") from None
    return StorageServicer(MetadataStore(engine), blobs, settings)


def build(settings: Settings, servicer: StorageServicer | None = None) -> ServiceDefinition:
    if servicer is None:  # the process: its start-up work logs in the suite's format
        logs.configure("storage", settings.log_level, settings.log_format)
        servicer = make_servicer(settings, migrate_in_child=True)
    return ServiceDefinition(
        name="storage",
        descriptors=(storage_service_pb2.DESCRIPTOR.services_by_name["Storage"],),
        port=settings.storage_port,
        register=lambda server: storage_service_pb2_grpc.add_StorageServicer_to_server(servicer, server),
        server_options=UPLOAD_FLOW_CONTROL,
        lifespan=lifespan(
            Sweeper(
                servicer.store.engine,
                servicer.blobs,
                settings.blob_sweep_seconds,
                settings.blob_sweep_grace_seconds,
            )
        ),
    )
