"""Blob stores: where payloads over the inline limit live.

One interface, implementations chosen from the URL:
  file:///path    a local folder (embedded default); atomic writes via temp file + rename
  s3://bucket     S3 or MinIO through the minio SDK; streamed multipart uploads

Keys are opaque, made by the caller. A write is invisible under its key until
commit(); abort() leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from minio import Minio
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
    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The blob's bytes in chunks; errors.NotFound when missing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a committed blob has this key."""


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
        cutoff = time.time() - self.STALE_TEMP_SECONDS
        for path in self.tmp.glob("*.part"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()

    def writer(self, key: str) -> BlobWriter:
        return _FileWriter(self._path(key), self.tmp)

    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
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

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        self.temp.unlink(missing_ok=True)


class S3BlobStore(BlobStore):
    # minio holds each part in memory while it sends it, PARALLEL_PARTS at a
    # time (and reads the next one meanwhile): memory ~ (PARALLEL_PARTS + 2) x PART_SIZE.
    PART_SIZE = 5 * 1024 * 1024
    PARALLEL_PARTS = 2

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

    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
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


_END = object()
_ABORT = object()


class _Aborted(Exception):
    pass


class _QueueReader:
    """A file-like object whose read() drains a queue fed by write(): lets
    minio's put_object stream a multipart upload of unknown length."""

    def __init__(self, q: queue.Queue[object]) -> None:
        self.q = q
        self.rest = b""
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        parts = [self.rest] if self.rest else []
        have = len(self.rest)
        while not self.ended and (size < 0 or have < size):
            item = self.q.get()
            if item is _ABORT:
                raise _Aborted
            if item is _END:
                self.ended = True
            else:
                parts.append(item)  # type: ignore[arg-type]
                have += len(item)  # type: ignore[arg-type]
        data = b"".join(parts)  # one copy of the part, no growing buffer
        if size < 0 or len(data) <= size:
            self.rest = b""
            return data
        self.rest = data[size:]
        return data[:size]


class _S3Writer(BlobWriter):
    def __init__(self, store: S3BlobStore, key: str) -> None:
        self.q: queue.Queue[object] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._upload, args=(store, key), daemon=True)
        self.thread.start()

    def _upload(self, store: S3BlobStore, key: str) -> None:
        try:
            # minio aborts the multipart upload itself when read() raises.
            store.client.put_object(
                store.bucket,
                key,
                _QueueReader(self.q),
                length=-1,
                part_size=S3BlobStore.PART_SIZE,
                num_parallel_uploads=S3BlobStore.PARALLEL_PARTS,
            )
        except Exception as exc:  # noqa: BLE001 - any failure is reported by write() / commit()
            self.error = exc
            while True:  # unblock a writer waiting on a full queue
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    break

    def write(self, chunk: bytes) -> None:
        if self.error is not None:
            raise errors.Unavailable(f"S3 upload failed: {self.error}")
        self.q.put(chunk)

    def commit(self) -> None:
        self.q.put(_END)
        self.thread.join()
        if self.error is not None:
            raise errors.Unavailable(f"S3 upload failed: {self.error}")

    def abort(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(queue.Full):
                self.q.put(_ABORT, timeout=5)
            self.thread.join(timeout=30)
