"""Streaming writes of payloads: bytes arrive in chunks and are hashed, sized
and written through as they come (inline buffer up to the limit, then the blob
store), never held whole. CSV uploads are also validated and profiled on the
way, in a worker thread fed by a bounded queue.

On any failure (bad CSV, a size limit passed, client gone, store error)
everything written is discarded: no blob, no temp file, and no row (rows are
written by the caller only after `finish()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, cast

from automl.common import errors, names
from automl.common.csvformat import CsvFormat
from services.storage import csvprofile
from services.storage.blobs import BlobStore, BlobWriter
from services.storage.repository import StoredContent

_END = object()


class ContentWriter:
    """Writes one payload: inline while it fits in `inline_max` bytes, then as a blob."""

    def __init__(self, blobs: BlobStore, inline_max: int) -> None:
        self.blobs = blobs
        self.inline_max = inline_max
        self.hash = hashlib.sha256()
        self.size = 0
        self.buffer = bytearray()
        self.blob: BlobWriter | None = None
        self.blob_key = ""
        # write() and abort() run in worker threads, and a cancelled upload's
        # abort may start while its last write still runs (asyncio cancels the
        # await, not the thread): that write could open the blob's temporary
        # file after abort looked, leaving it behind. One at a time, and no
        # write after an abort.
        self._lock = threading.Lock()
        self._aborted = False

    def write(self, chunk: bytes) -> None:
        """Blocking: call from a worker thread."""
        with self._lock:
            if not self._aborted:
                self._write(chunk)

    def _write(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        self.size += len(chunk)
        if self.blob is None and self.size <= self.inline_max:
            self.buffer += chunk
            return
        if self.blob is None:
            self.blob_key = f"contents/{names.new_id()}{names.new_id()}"
            self.blob = self.blobs.writer(self.blob_key)
            self.blob.write(bytes(self.buffer))
            self.buffer = bytearray()
        self.blob.write(chunk)

    def finish(self) -> StoredContent:
        """Blocking: commit the blob (if any) and describe what was written."""
        if self.blob is not None:
            self.blob.commit()
            return StoredContent(self.hash.hexdigest(), self.size, blob_key=self.blob_key)
        return StoredContent(self.hash.hexdigest(), self.size, inline_data=bytes(self.buffer))

    def abort(self) -> None:
        """Blocking: discard everything; never raises."""
        with self._lock:
            self._aborted = True
            if self.blob is not None:
                self.blob.abort()
                with contextlib.suppress(Exception):  # committed already? then remove it
                    self.blobs.delete(self.blob_key)


class _QueueSource:
    """The profiler's file-like input: read() drains chunks the upload pushes."""

    def __init__(self, q: queue.Queue[object]) -> None:
        self.q = q
        self.pending = b""
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        # Without an empty `pending` in it, a read served by one chunk joins a
        # one-element list: the chunk itself, no 1 MiB copy.
        parts = [self.pending] if self.pending else []
        have = len(self.pending)
        while not self.ended and (size < 0 or have < size):
            item = self.q.get()
            if item is _END:
                self.ended = True
            elif isinstance(item, BaseException):
                raise item
            else:
                chunk = cast(bytes, item)  # the rest of what the upload pushes: its chunks
                parts.append(chunk)
                have += len(chunk)
        data = b"".join(parts)
        if size < 0:
            self.pending = b""
            return data
        self.pending = data[size:]
        return data[:size]


@dataclass(frozen=True)
class SizeLimit:
    """The most bytes a stream may bring, and the refusal past it (RESOURCE_EXHAUSTED)."""

    max_bytes: int
    message: str  # names the limit and the setting behind it
    too_large: bool = True  # a size limit of one file (HTTP 413); False: the tenant's quota (429)


def _offer(q: queue.Queue[object], item: object, consumer: Future[Any]) -> None:
    """Put `item` unless the consumer already stopped (it failed: nobody reads)."""
    while not consumer.done():
        try:
            q.put(item, timeout=0.05)
            return
        except queue.Full:
            continue


async def write_stream(
    chunks: AsyncIterator[bytes],
    writer: ContentWriter,
    *,
    expected_sha256: str = "",
    consumer: Callable[[_QueueSource], Any] | None = None,
    limit: SizeLimit | None = None,
) -> tuple[StoredContent, Any]:
    """Write every chunk; when `consumer` is given, it runs in a thread on the same
    bytes (e.g. the CSV profiler) and its result is returned beside the content.
    Past `limit`, the chunk that would pass it is refused before it is written.
    The caller owns `writer` until this returns: on an exception it is aborted here."""
    loop = asyncio.get_running_loop()
    feed: queue.Queue[object] = queue.Queue(maxsize=4)
    task: Future[Any] | None = None
    if consumer is not None:
        task = Future()
        loop.run_in_executor(None, _run_into, task, consumer, _QueueSource(feed))
    try:
        async for chunk in chunks:
            if limit is not None and writer.size + len(chunk) > limit.max_bytes:
                raise errors.ResourceExhausted(limit.message, too_large=limit.too_large)
            await asyncio.to_thread(writer.write, chunk)
            if task is not None:
                if task.done():
                    break  # the consumer failed early: no need to read the rest
                await asyncio.to_thread(_offer, feed, chunk, task)
        result = None
        if task is not None:
            await asyncio.to_thread(_offer, feed, _END, task)
            result = await asyncio.wrap_future(task)
        content = await asyncio.to_thread(writer.finish)
        if expected_sha256 and expected_sha256.lower() != content.sha256:
            # The caller's own checksum against the bytes it sent: its input
            # (INVALID_ARGUMENT, HTTP 400), not storage's corruption
            # (DATA_LOSS stays for what storage finds wrong on read).
            raise errors.InvalidArgument.field(
                "header.expected_sha256",
                f"the received bytes hash to {content.sha256}, not {expected_sha256[:64]}: "
                "the file changed or was cut in transit; upload it again",
            )
        return content, result
    except BaseException:
        if task is not None and not task.done():
            _interrupt(feed, errors.Cancelled("upload ended"))
        await asyncio.shield(asyncio.to_thread(writer.abort))
        raise


def _interrupt(q: queue.Queue[object], error: BaseException) -> None:
    """Wake the consumer with `error`, making room if the queue is full, so that
    its thread ends instead of waiting forever for bytes that will not come."""
    while True:
        try:
            q.put_nowait(error)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                q.get_nowait()


def _run_into(target: Future[Any], consumer: Callable[[_QueueSource], Any], source: _QueueSource) -> None:
    try:
        target.set_result(consumer(source))
    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
        target.set_exception(exc)


def profile(fmt: CsvFormat, limits: csvprofile.Limits) -> Callable[[_QueueSource], csvprofile.CsvProfile]:
    """The CSV consumer of an upload: a file past a size limit is RESOURCE_EXHAUSTED
    (the message names the setting), other validation errors INVALID_ARGUMENT."""

    def run(source: _QueueSource) -> csvprofile.CsvProfile:
        try:
            return csvprofile.profile_csv(source, fmt, limits)
        except csvprofile.CsvLimitError as exc:
            raise errors.ResourceExhausted(str(exc), too_large=True) from exc
        except csvprofile.CsvFormatError as exc:
            raise errors.InvalidArgument(str(exc), [errors.FieldViolation("chunk", str(exc))]) from exc

    return run
