"""Nothing left behind: blobs no content row names, and unfinished uploads a
crashed process left (temporary files, S3 multipart uploads), are removed at
start-up and then periodically.

A blob is written (committed) before its content row; a crash between the
two leaves a blob nothing names. Only blobs older than the grace period are
looked at, so an upload committing right now, whose row is a moment away,
is never taken for an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from sqlalchemy import Engine, select

from services.storage import schema
from services.storage.blobs import BlobStore

log = logging.getLogger("automl.storage.sweeper")

BATCH = 500


@dataclass
class Swept:
    orphan_blobs: int = 0
    stale_uploads: int = 0


def sweep(engine: Engine, blobs: BlobStore, grace_seconds: float, now: float | None = None) -> Swept:
    """One pass: delete the blobs older than the grace period that no content
    row names, and abort the unfinished uploads older than it."""
    cutoff = (time.time() if now is None else now) - grace_seconds
    swept = Swept(stale_uploads=blobs.abort_uploads_before(cutoff))
    batch: list[str] = []
    for key in blobs.keys_before(cutoff):
        batch.append(key)
        if len(batch) == BATCH:
            swept.orphan_blobs += _delete_orphans(engine, blobs, batch)
            batch = []
    if batch:
        swept.orphan_blobs += _delete_orphans(engine, blobs, batch)
    return swept


def _delete_orphans(engine: Engine, blobs: BlobStore, keys: list[str]) -> int:
    with engine.connect() as connection:
        named = set(connection.scalars(select(schema.Content.blob_key).where(schema.Content.blob_key.in_(keys))))
    orphans = [key for key in keys if key not in named]
    for key in orphans:
        blobs.delete(key)
        log.warning("removed a blob no content row names (left by a crash)", extra={"blob": key})
    return len(orphans)


class Sweeper:
    """Sweeps at start-up, then every `interval_seconds`, off the event loop."""

    def __init__(self, engine: Engine, blobs: BlobStore, interval_seconds: float, grace_seconds: float) -> None:
        self.engine = engine
        self.blobs = blobs
        self.interval = interval_seconds
        self.grace = grace_seconds
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._forever(), name="blob sweeper")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _forever(self) -> None:
        while True:
            try:
                swept = await asyncio.to_thread(sweep, self.engine, self.blobs, self.grace)
                if swept.orphan_blobs or swept.stale_uploads:
                    log.info("swept", extra={"orphan_blobs": swept.orphan_blobs, "stale_uploads": swept.stale_uploads})
            except Exception:  # the next pass tries again; serving goes on
                log.exception("blob sweep failed")
            await asyncio.sleep(self.interval)
