"""Nothing left behind: the sweeper removes blobs no content row names (a
crash between a blob's commit and its row), only past the grace period, on
every backend; the storage process sweeps at start-up, so a kill -9 in the
middle of uploads leaves nothing once it is back."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from automl.v1 import dataset_pb2, storage_service_pb2_grpc
from services.storage.sweeper import sweep
from tests import internal
from tests.conftest import ROOT, suite_env, wait_serving
from tests.storage.helpers import mixed_csv, upload_stream


async def test_blobs_no_row_names_go_and_only_those(storage):
    data = mixed_csv(10_000)  # over the inline limit: a blob, with its content row
    kept = await storage.stub.UploadDataset(upload_stream(data))
    blobs, engine = storage.servicer.blobs, storage.servicer.store.engine
    orphan = blobs.writer("contents/left-by-a-crash")  # committed; the process died before its row
    orphan.write(b"a,b\n1,2\n")
    orphan.commit()
    before = set(storage.blob_keys())
    young = await asyncio.to_thread(sweep, engine, blobs, 3600)
    assert young.orphan_blobs == 0 and set(storage.blob_keys()) == before, "within the grace period: untouched"
    swept = await asyncio.to_thread(sweep, engine, blobs, 0, time.time() + 5)
    assert swept.orphan_blobs == 1
    assert before - set(storage.blob_keys()) == {"contents/left-by-a-crash"}
    chunks = storage.stub.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name=kept.name))
    assert b"".join([m.chunk async for m in chunks]) == data


def test_a_storage_killed_mid_upload_leaves_nothing_once_back(tmp_path: Path):
    env = suite_env(tmp_path) | {"AUTOML_BLOB_SWEEP_GRACE_SECONDS": "0.001"}
    target = f"127.0.0.1:{env['AUTOML_STORAGE_PORT']}"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "services.storage"], cwd=ROOT, env=env)
        wait_serving(target, "automl.v1.Storage", proc)
        return proc

    def uploads(data: bytes, name: str):
        yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name=name))
        for i in range(0, len(data), 1 << 16):
            yield dataset_pb2.UploadDatasetRequest(chunk=data[i : i + (1 << 16)])
            time.sleep(0.001)  # slow enough to be cut in the middle

    data = mixed_csv(60_000)
    proc = start()
    with internal.channel(target) as channel:
        stub = storage_service_pb2_grpc.StorageStub(channel)
        acknowledged = stub.UploadDataset(uploads(data, "acknowledged"), timeout=120)
        cut = threading.Thread(target=lambda: _ignore(lambda: stub.UploadDataset(uploads(data, "cut"), timeout=120)))
        cut.start()
        blobs = tmp_path / "data" / "blobs"
        deadline = time.monotonic() + 60
        while not any((blobs / ".tmp").glob("*.part")):  # the second upload is under way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        cut.join(timeout=30)
    assert any((blobs / ".tmp").glob("*.part")), "the crash left a temporary file"
    proc = start()
    try:
        with internal.channel(target) as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            listed = stub.ListDatasets(dataset_pb2.ListDatasetsRequest(), timeout=10)
            body = b"".join(
                m.chunk for m in stub.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name=acknowledged.name))
            )
        assert [d.display_name for d in listed.datasets] == ["acknowledged"]
        assert body == data
        deadline = time.monotonic() + 30
        while any((blobs / ".tmp").glob("*.part")):  # the start-up sweep runs beside serving
            assert time.monotonic() < deadline, "the crash's temporary file is still there"
            time.sleep(0.1)
        committed = [p for p in blobs.rglob("*") if p.is_file() and ".tmp" not in p.parts]
        assert len(committed) == 1, committed  # the acknowledged dataset's, and nothing else
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _ignore(call) -> None:
    with contextlib.suppress(grpc.RpcError):  # the server died under it: that is the point
        call()
