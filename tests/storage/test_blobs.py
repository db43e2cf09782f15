"""The blob stores' contract, on the local folder and on a real S3 server."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from automl.common import errors
from automl.common.settings import Settings
from services.storage.blobs import FileBlobStore, open_blob_store
from services.storage.ingest import ContentWriter


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_blob_store(f"file://{tmp_path / 'blobs'}", Settings())
    return s3_store(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))


def s3_store(server, bucket: str, secret_key: str = ""):
    settings = Settings.from_env(
        {
            "AUTOML_BLOB_URL": f"s3://{bucket}",
            "AUTOML_S3_ENDPOINT": server.endpoint,
            "AUTOML_S3_ACCESS_KEY": server.access_key,
            "AUTOML_S3_SECRET_KEY": secret_key or server.secret_key,
        }
    )
    return open_blob_store(settings.blob_url, settings)


def test_write_commit_read_delete(store):
    store.check()
    data = os.urandom(20 * 1024 * 1024 + 17)  # several multipart parts
    writer = store.writer("a/b")
    for i in range(0, len(data), 1 << 20):
        writer.write(data[i : i + (1 << 20)])
    assert not store.exists("a/b"), "invisible until commit"
    writer.commit()
    assert store.exists("a/b")
    assert b"".join(store.read("a/b")) == data
    store.delete("a/b")
    store.delete("a/b")  # idempotent
    assert not store.exists("a/b")
    with pytest.raises(errors.NotFound):
        b"".join(store.read("a/b"))


def test_abort_leaves_nothing(store):
    store.check()
    writer = store.writer("gone")
    writer.write(os.urandom(12 * 1024 * 1024))
    writer.abort()
    assert not store.exists("gone")


def test_a_cancelled_upload_leaves_no_temporary_file_whatever_the_order(tmp_path):
    """asyncio cancels an upload's await, not the thread writing its chunk: the
    abort may run while (or before) the write that opens the blob's temporary
    file. That write must wait for, or give way to, the abort."""
    store = FileBlobStore(tmp_path / "blobs")
    aborted_first = ContentWriter(store, inline_max=4)
    aborted_first.abort()
    aborted_first.write(b"x" * 100)  # the cancelled thread's late write
    assert not list((tmp_path / "blobs").rglob("*.part"))

    slow = ContentWriter(SlowBlobs(store), inline_max=4)
    writing = threading.Thread(target=slow.write, args=(b"y" * 100,))
    writing.start()
    time.sleep(0.05)  # the write is opening the blob
    slow.abort()
    writing.join()
    assert not list((tmp_path / "blobs").rglob("*.part"))


class SlowBlobs:
    """A folder store whose writer takes a moment to open."""

    def __init__(self, store: FileBlobStore) -> None:
        self.store = store

    def writer(self, key: str):
        time.sleep(0.2)
        return self.store.writer(key)

    def delete(self, key: str) -> None:
        self.store.delete(key)


def test_s3_wrong_keys_stop_with_a_clear_error(s3_server):
    settings = Settings.from_env(
        {
            "AUTOML_BLOB_URL": "s3://anything",
            "AUTOML_S3_ENDPOINT": s3_server.endpoint,
            "AUTOML_S3_ACCESS_KEY": s3_server.access_key,
            "AUTOML_S3_SECRET_KEY": "wrong",
        }
    )
    with pytest.raises(errors.Unavailable) as caught:
        open_blob_store(settings.blob_url, settings).check()
    assert "check AUTOML_S3_ACCESS_KEY / AUTOML_S3_SECRET_KEY" in str(caught.value)


def test_folder_store_refuses_keys_that_escape_and_sweeps_stale_temps(tmp_path):
    store = FileBlobStore(tmp_path / "blobs")
    with pytest.raises(errors.InvalidArgument):
        store.writer("../outside")
    store.check()
    stale = store.tmp / "old.part"
    fresh = store.tmp / "new.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * FileBlobStore.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    store.check()
    assert not stale.exists() and fresh.exists()


def test_s3_bucket_is_created_when_missing(s3_server):
    """Storage creates its bucket at start: the compose file has no init container."""
    name = f"made-{uuid.uuid4().hex[:12]}"
    settings = Settings.from_env(
        {
            "AUTOML_BLOB_URL": f"s3://{name}/prefix",
            "AUTOML_S3_ENDPOINT": s3_server.endpoint,
            "AUTOML_S3_ACCESS_KEY": s3_server.access_key,
            "AUTOML_S3_SECRET_KEY": s3_server.secret_key,
        }
    )
    client = s3_server.client()
    assert not client.bucket_exists(name)
    store = open_blob_store(settings.blob_url, settings)
    try:
        store.check()
        assert client.bucket_exists(name)
        store.check()  # a second start finds it
        writer = store.writer("k")
        writer.write(b"bytes")
        writer.commit()
        assert b"".join(store.read("k")) == b"bytes"
    finally:
        for item in client.list_objects(name, recursive=True):
            client.remove_object(name, item.object_name)
        client.remove_bucket(name)


def test_s3_multipart_upload_is_streamed_part_by_part_and_aborted_cleanly(s3_server, s3_bucket):
    """Parts go out while later bytes still arrive (at most one part waits in
    memory beside the one being sent); abort() removes the multipart upload."""
    store = s3_store(s3_server, s3_bucket)
    store.check()
    writer = store.writer("streamed")
    chunk = os.urandom(1 << 20)
    for _ in range(16):
        writer.write(chunk)
        assert writer.gathered_size < store.PART_SIZE + len(chunk)
    assert writer.part_number >= 3 and writer.upload_id
    upload_id = writer.upload_id
    writer.abort()
    assert not store.exists("streamed")
    uploads = store.client._list_multipart_uploads(store.bucket, prefix=store._key("streamed"))
    assert upload_id not in {u.upload_id for u in uploads.uploads}


def test_s3_upload_failure_is_unavailable_and_leaves_nothing(s3_server, s3_bucket):
    s3_store(s3_server, s3_bucket).check()  # the bucket exists; the writer's keys are wrong
    writer = s3_store(s3_server, s3_bucket, secret_key="wrong").writer("refused")
    with pytest.raises(errors.Unavailable, match="S3 upload failed"):
        for _ in range(8):  # more than a part: the multipart upload is refused
            writer.write(os.urandom(1 << 20))
    writer.abort()
    small = s3_store(s3_server, s3_bucket, secret_key="wrong").writer("refused-small")
    small.write(b"x" * 1000)
    with pytest.raises(errors.Unavailable, match="S3 upload failed"):
        small.commit()
    assert not s3_store(s3_server, s3_bucket).exists("refused-small")


def test_listing_by_age_and_discarding_what_a_crash_left(store):
    store.check()
    writer = store.writer("old/x")
    writer.write(b"x")
    writer.commit()
    now = time.time()
    assert "old/x" in set(store.keys_before(now + 60))
    assert "old/x" not in set(store.keys_before(now - 60))
    unfinished = store.writer("unfinished")  # a write a crashed process never finished
    unfinished.write(os.urandom(6 * 1024 * 1024))
    assert store.abort_uploads_before(now - 3600) == 0, "a young one is left alone"
    if isinstance(store, FileBlobStore):  # rclone's S3 server lists no multipart upload: moto's does, below
        assert store.abort_uploads_before(time.time() + 60) == 1
        assert store.abort_uploads_before(time.time() + 60) == 0
    unfinished.abort()
    assert not store.exists("unfinished") and store.exists("old/x")


def test_s3_multipart_uploads_a_crash_left_are_aborted(moto_s3):
    settings = Settings.from_env(
        {"AUTOML_BLOB_URL": "s3://sweep", "AUTOML_S3_ENDPOINT": moto_s3, "AUTOML_S3_ACCESS_KEY": "k",
         "AUTOML_S3_SECRET_KEY": "s", "AUTOML_S3_REGION": "us-east-1"}
    )  # fmt: skip
    store = open_blob_store(settings.blob_url, settings)
    store.check()
    unfinished = store.writer("unfinished")
    unfinished.write(os.urandom(6 * 1024 * 1024))  # over one part: a multipart upload is open
    deadline = time.monotonic() + 10
    while not store.client._list_multipart_uploads("sweep").uploads:  # the part is sent from a thread
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store.abort_uploads_before(time.time() + 60) == 1
    assert not store.client._list_multipart_uploads("sweep").uploads
    unfinished.abort()  # what the crashed process would have done: harmless now
