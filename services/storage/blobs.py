"""Blob stores: where payloads over the inline limit live.

One interface, implementations chosen from the URL:
  file:///path    a local folder (embedded default); atomic writes via temp file + rename
  s3://bucket     S3 or MinIO through the minio SDK; streamed multipart uploads

Keys are opaque, made by the caller. A write is invisible under its key until
commit(); abort() leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error

from automl.common import errors
from automl.common.settings import Settings

CHUNK = 1024 * 1024


class BlobWriter(ABC):
    """A streaming write in progress."""

    @abstractmethod
    def write(self, chunk: bytes) -> None:
        """Append bytes. May block while the store catches up (back-pressure)."""

    @abstractmethod
    def commit(self) -> None:
        """Make the bytes visible under the key; raises if the store failed."""

    @abstractmethod
    def abort(self) -> None:
        """Discard everything written; idempotent, never raises."""


class BlobStore(ABC):
    """The contract every blob store keeps."""

    @abstractmethod
    def check(self) -> None:
        """Fail with errors.Unavailable (naming the store and the fix) unless the store
        is reachable and writable; create the bucket / folder when missing."""

    @abstractmethod
    def writer(self, key: str) -> BlobWriter:
        """Start writing the blob `key`."""

    @abstractmethod
    def read(self, key: str, chunk_size: int = CHUNK) -> Generator[bytes, None, None]:
        """The blob's bytes in chunks; errors.NotFound when missing. A generator:
        close() releases the file or connection of one not read to its end."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a committed blob has this key."""

    @abstractmethod
    def keys_before(self, cutoff: float) -> Iterator[str]:
        """Keys of the committed blobs last written before `cutoff` (a Unix time)."""

    @abstractmethod
    def abort_uploads_before(self, cutoff: float) -> int:
        """Discard the unfinished writes a crashed process left, started before
        `cutoff` (temporary files, S3 multipart uploads); how many."""


def open_blob_store(url: str, settings: Settings) -> BlobStore:
    """The blob store for `url` (file:// or s3://)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileBlobStore(Path(parsed.path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise errors.InvalidArgument(f"blob URL {url!r} names no bucket: use s3://bucket")
        return S3BlobStore(
            Minio(
                settings.s3_endpoint,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
                secure=settings.s3_secure,
                region=settings.s3_region or None,
            ),
            bucket=parsed.netloc,
            prefix=parsed.path.strip("/"),
            endpoint=settings.s3_endpoint,
        )
    raise errors.InvalidArgument(f"blob URL {url!r}: use file:///path or s3://bucket")


class FileBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise errors.InvalidArgument(f"blob key {key!r} leaves the blob folder")
        return path

    STALE_TEMP_SECONDS = 3600

    def check(self) -> None:
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            self._sweep_stale_temps()
            probe = self.tmp / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise errors.Unavailable(f"blob folder {self.root} is not writable: {exc}") from exc

    def _sweep_stale_temps(self) -> None:
        """Remove temp files a crashed process left (an hour old: no write lasts that long idle)."""
        self.abort_uploads_before(time.time() - self.STALE_TEMP_SECONDS)

    def writer(self, key: str) -> BlobWriter:
        return _FileWriter(self._path(key), self.tmp)

    def read(self, key: str, chunk_size: int = CHUNK) -> Generator[bytes, None, None]:
        try:
            handle = open(self._path(key), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise errors.NotFound(f"blob {key} is missing from {self.root}") from None
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys_before(self, cutoff: float) -> Iterator[str]:
        for path in self.root.rglob("*"):
            if self.tmp in path.parents or path == self.tmp:
                continue
            with contextlib.suppress(OSError):  # deleted meanwhile
                if path.is_file() and path.stat().st_mtime < cutoff:
                    yield str(path.relative_to(self.root))

    def abort_uploads_before(self, cutoff: float) -> int:
        removed = 0
        for path in self.tmp.glob("*.part"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed


class _FileWriter(BlobWriter):
    def __init__(self, final: Path, tmp_dir: Path) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.final = final
        self.temp = tmp_dir / f"{uuid.uuid4().hex}.part"
        self.handle = open(self.temp, "wb")  # noqa: SIM115 - closed by commit/abort

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.temp, self.final)  # atomic: readers see all of it or nothing
        # The rename is durable only once its folder is: without this, a power
        # cut could lose a blob whose row the database has already committed.
        folder = os.open(self.final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        self.temp.unlink(missing_ok=True)


class S3BlobStore(BlobStore):
    # S3's smallest part but the last; _S3Writer holds about two (one sent, one gathering).
    PART_SIZE = 5 * 1024 * 1024

    def __init__(self, client: Minio, bucket: str, prefix: str = "", endpoint: str = "") -> None:
        self.client = client
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""

    def _key(self, key: str) -> str:
        return self.prefix + key

    def check(self) -> None:
        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
        except S3Error as exc:
            raise errors.Unavailable(
                f"S3 bucket {self.bucket} at {self.endpoint}: {exc.code}: {exc.message} "
                "(check AUTOML_S3_ACCESS_KEY / AUTOML_S3_SECRET_KEY)"
            ) from exc
        except Exception as exc:
            raise errors.Unavailable(
                f"S3 server {self.endpoint} unreachable: {exc} (check AUTOML_S3_ENDPOINT)"
            ) from exc

    def writer(self, key: str) -> BlobWriter:
        return _S3Writer(self, self._key(key))

    def read(self, key: str, chunk_size: int = CHUNK) -> Generator[bytes, None, None]:
        try:
            response = self.client.get_object(self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise errors.NotFound(f"blob {key} is missing from bucket {self.bucket}") from None
            raise errors.Unavailable(f"S3 read of {key}: {exc.code}: {exc.message}") from exc
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._key(key))

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, self._key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise
        return True

    def keys_before(self, cutoff: float) -> Iterator[str]:
        for item in self.client.list_objects(self.bucket, prefix=self.prefix, recursive=True):
            modified = item.last_modified.timestamp() if item.last_modified else cutoff
            if not item.is_dir and modified < cutoff and item.object_name:
                yield item.object_name[len(self.prefix) :]

    def abort_uploads_before(self, cutoff: float) -> int:
        """S3 keeps the parts of a multipart upload nobody completed or aborted
        (and bills them) until told: a crash mid-upload leaves one."""
        aborted, key_marker, upload_marker = 0, None, None
        while True:
            # The SDK has no public listing of uploads; its request helper is stable across 7.x.
            try:
                page = self.client._list_multipart_uploads(
                    self.bucket, prefix=self.prefix or None, key_marker=key_marker, upload_id_marker=upload_marker
                )
            except S3Error as exc:
                if exc.code == "NoSuchUpload":  # rclone's S3 server, on a bucket that never had one
                    return aborted
                raise
            for upload in page.uploads:
                started = upload.initiated_time.timestamp() if upload.initiated_time else cutoff
                if started < cutoff:
                    with contextlib.suppress(S3Error):
                        # A listed upload has its UploadId (minio types every field of a listing optional).
                        upload_id = cast(str, upload.upload_id)
                        self.client._abort_multipart_upload(self.bucket, upload.object_name, upload_id)
                        aborted += 1
            if not page.is_truncated:
                return aborted
            # (minio 7.2 stores NextUploadIdMarker under a wrong attribute name: the key marker pages alone.)
            key_marker, upload_marker = page.next_key_marker, getattr(page, "next_upload_id_marker", None)


class _S3Writer(BlobWriter):
    """A multipart upload driven here, part by part: chunks gather until they
    make a part, are joined once, and go to an uploader thread that sends one
    part while the next one gathers. minio's put_object on a stream of unknown
    length would copy each part three times (reading, then one byte more and
    one less) and keep three of them (two sent, one read ahead) besides its
    input queue: ~25 MiB against ~10 here.
    The multipart calls are minio's own (pinned version), without put_object's
    buffering. A blob smaller than one part is a single put_object."""

    def __init__(self, store: S3BlobStore, key: str) -> None:
        self.store = store
        self.key = key
        self.gathered: list[bytes] = []
        self.gathered_size = 0
        self.upload_id = ""
        self.part_number = 0
        self.parts: list[Part] = []
        self.error: BaseException | None = None
        # One part in flight: taken before a part is handed over, released when sent.
        self.in_flight = threading.Semaphore(1)
        self.outbox: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()  # abort() may run while a write() is still under way

    def write(self, chunk: bytes) -> None:
        self._raise_if_failed()
        self.gathered.append(chunk)
        self.gathered_size += len(chunk)
        if self.gathered_size >= S3BlobStore.PART_SIZE:
            self._send_gathered()

    def _send_gathered(self) -> None:
        client = self.store.client
        with self.lock:
            self._raise_if_failed()  # aborted meanwhile: start nothing
            if not self.upload_id:
                try:
                    self.upload_id = client._create_multipart_upload(
                        self.store.bucket, self.key, {"Content-Type": "application/octet-stream"}
                    )
                except Exception as exc:  # noqa: BLE001 - reported as the store's failure
                    self.error = exc
                    self._raise_if_failed()
                self.thread = threading.Thread(target=self._send_parts, daemon=True)
                self.thread.start()
        self.in_flight.acquire()  # back-pressure: wait until the previous part is sent
        self._raise_if_failed()
        self.part_number += 1
        part = b"".join(self.gathered)  # the one copy of the part's bytes
        self.gathered = []
        self.gathered_size = 0
        self.outbox.put((self.part_number, part))

    def _send_parts(self) -> None:
        client = self.store.client
        while (item := self.outbox.get()) is not None:
            number, data = item
            try:
                if self.error is None:
                    etag = client._upload_part(self.store.bucket, self.key, data, None, self.upload_id, number)
                    self.parts.append(Part(number, etag))
            except Exception as exc:  # noqa: BLE001 - reported by write() / commit()
                self.error = exc
            finally:
                del data, item
                self.in_flight.release()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise errors.Unavailable(f"S3 upload failed: {self.error}")

    def _stop_sender(self) -> None:
        with self.lock:
            thread, self.thread = self.thread, None
        if thread is not None:
            self.outbox.put(None)
            thread.join()

    def commit(self) -> None:
        client = self.store.client
        try:
            if not self.upload_id:  # under one part: a plain put
                data = b"".join(self.gathered)
                client.put_object(self.store.bucket, self.key, io.BytesIO(data), len(data))
                return
            if self.gathered:  # the last part may be smaller than PART_SIZE
                self._send_gathered()
            self._stop_sender()
            self._raise_if_failed()
            self.parts.sort(key=lambda part: part.part_number)
            client._complete_multipart_upload(self.store.bucket, self.key, self.upload_id, self.parts)
            self.upload_id = ""  # done: nothing left for abort() to undo
        except errors.Unavailable:
            self.abort()
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is Unavailable
            self.error = exc
            self.abort()
            self._raise_if_failed()

    def abort(self) -> None:
        with self.lock:
            self.error = self.error or _Aborted()  # the sender skips what is still queued
            upload_id, self.upload_id = self.upload_id, ""
        self._stop_sender()
        self.gathered = []
        if upload_id:
            with contextlib.suppress(Exception):
                self.store.client._abort_multipart_upload(self.store.bucket, self.key, upload_id)


class _Aborted(Exception):
    def __str__(self) -> str:
        return "aborted"
