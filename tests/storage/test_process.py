"""The storage service as a real process on its embedded defaults (SQLite file
and blob folder under AUTOML_DATA_DIR): data survives a restart."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

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


MEMORY_GOAL_MB = 200  # storage's peak RSS goal (bench/README.md)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def wide_csv(columns: int, rows: int, distinct: bool = False) -> bytes:
    lines = [",".join(f"c{i}" for i in range(columns))]
    for r in range(rows):
        lines.append(",".join(f"t{r}x{i}" for i in range(columns)) if distinct else ",".join("1" * columns))
    return ("\n".join(lines) + "\n").encode()


def test_wide_files_keep_storage_under_its_memory_goal(tmp_path):
    """A 100,000-column CSV is refused on its header, before any column's
    statistics exist; a file at the default column limit (250), every value
    distinct, is profiled within the goal (the columns share the statistics' memory)."""
    env = suite_env(tmp_path)
    target = f"127.0.0.1:{env['AUTOML_STORAGE_PORT']}"
    proc = start(env)
    try:
        with internal.channel(target) as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                stub.UploadDataset(requests(wide_csv(100_000, 20)), timeout=60)
            refused_after = time.monotonic() - started
            peak_refused = peak_rss_mb(proc.pid)
            dataset = stub.UploadDataset(requests(wide_csv(250, 3000, distinct=True)), timeout=300)
            peak_widest = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    assert "more than 250 columns" in caught.value.details()
    assert "AUTOML_CSV_MAX_COLUMNS" in caught.value.details()
    assert refused_after < 10, f"refused after {refused_after:.1f} s"
    assert peak_refused < MEMORY_GOAL_MB, f"peak RSS {peak_refused:.0f} MB refusing 100,000 columns"
    assert len(dataset.columns) == 250 and dataset.row_count == 3000
    assert peak_widest < MEMORY_GOAL_MB, f"peak RSS {peak_widest:.0f} MB profiling 250 distinct columns"
    with sqlite3.connect(tmp_path / "data" / "automl.db") as db:
        assert db.execute("SELECT count(*) FROM datasets").fetchone() == (1,)  # the refused file left no row
        assert db.execute("SELECT count(*) FROM contents").fetchone() == (1,)
    blobs = [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1, blobs  # the accepted file's; the refused one left no blob or temp file
