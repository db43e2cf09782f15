"""The storage service as a real process on its embedded defaults (SQLite file
and blob folder under AUTOML_DATA_DIR): data survives a restart."""

from __future__ import annotations

import subprocess
import sys

from automl.v1 import dataset_pb2, storage_service_pb2_grpc
from tests import internal
from tests.conftest import ROOT, suite_env, wait_serving
from tests.storage.helpers import mixed_csv


def start(env):
    proc = subprocess.Popen([sys.executable, "-m", "services.storage"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    wait_serving(f"127.0.0.1:{env['AUTOML_STORAGE_PORT']}", "automl.v1.Storage", proc)
    return proc


def stop(proc):
    proc.terminate()
    assert proc.wait(timeout=15) == 0


def requests(data: bytes):
    yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name="restart me"))
    for i in range(0, len(data), 1 << 20):
        yield dataset_pb2.UploadDatasetRequest(chunk=data[i : i + (1 << 20)])


def test_embedded_defaults_persist_across_restarts(tmp_path):
    env = suite_env(tmp_path)
    data = mixed_csv(10_000)  # over the inline limit: goes to the blob folder
    proc = start(env)
    try:
        with internal.channel(f"127.0.0.1:{env['AUTOML_STORAGE_PORT']}") as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            dataset = stub.UploadDataset(requests(data), timeout=60)
    finally:
        stop(proc)
    assert (tmp_path / "data" / "automl.db").exists()
    assert any((tmp_path / "data" / "blobs").rglob("*"))
    proc = start(env)
    try:
        with internal.channel(f"127.0.0.1:{env['AUTOML_STORAGE_PORT']}") as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            again = stub.GetDataset(dataset_pb2.GetDatasetRequest(name=dataset.name), timeout=10)
            body = b"".join(
                m.chunk for m in stub.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name=dataset.name))
            )
    finally:
        stop(proc)
    assert again == dataset
    assert body == data


def test_unreachable_s3_stops_start_up_with_a_clear_line(tmp_path):
    env = suite_env(tmp_path) | {
        "AUTOML_BLOB_URL": "s3://automl",
        "AUTOML_S3_ENDPOINT": "127.0.0.1:1",
        "AUTOML_S3_ACCESS_KEY": "x",
        "AUTOML_S3_SECRET_KEY": "y",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.storage"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "storage: S3 server 127.0.0.1:1 unreachable" in result.stderr
