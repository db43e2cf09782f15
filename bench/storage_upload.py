"""Upload throughput, CPU and memory of the storage service against an S3 server.

Measures, in one run on the same S3 server (rclone serve s3) and the same
generated CSV file:
  fput      the minio SDK's own fput_object of the file (the baseline, measured
            again right before each storage upload: the machine's speed drifts)
  storage   the file streamed through the storage service (a real process,
            `python -m services.storage`, blobs on that S3 server) in 1 MiB
            gRPC chunks, validated and profiled on the way, after a 1 MB
            warm-up upload (the service loads pyarrow on its first CSV)
and prints storage/fput throughput (goal >= 0.7; with --repeat, the median)
and the storage process's RSS idle, after the warm-up and at its peak (goal
< 200 MB, independent of file size) for each size.

Every path also shows the CPU-seconds per 100 MB of each process taking part
(the storage service, the S3 server, this client) and its "CPU-bound ratio":
fput's time over the time the path's CPU-seconds need when spread over all the
machine's cores, the best ratio that work could reach with every core busy
from start to end. Where that bound is under the goal, no scheduling can meet
it: only less CPU per byte can.

Every upload starts from the same state: the previous uploads' objects are
removed and their dirty pages written out (os.sync) before the clock starts.

With --bounds, three more storage processes (bench/storage_variant.py) show what
the upload costs without the profile's statistics ("parse only": every row
still parsed and checked), with pyarrow converting every value to its column's
type and no other statistics ("typed only": the least a full type check costs
with pyarrow's reader) and without any CSV work ("bytes only").

    .venv/bin/python bench/storage_upload.py --sizes-mb 100 1024
    .venv/bin/python bench/storage_upload.py --sizes-mb 100 --bounds
    .venv/bin/python bench/storage_upload.py --sizes-mb 1024 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automl.v1 import dataset_pb2, storage_service_pb2_grpc  # noqa: E402
from bench.cpu import CpuWindow  # noqa: E402
from bench.csvgen import KINDS, write_csv  # noqa: E402
from tests import internal  # noqa: E402
from tests.conftest import free_port, wait_serving  # noqa: E402
from tests.servers import S3Server, rclone_binary  # noqa: E402

CHUNK = 1 << 20
CORES = os.cpu_count() or 1
T = TypeVar("T")
# How each storage path is started: the service itself, or a bench variant of it.
PATHS = {
    "storage": ["-m", "services.storage"],
    "storage, parse only": ["-m", "bench.storage_variant", "parse"],
    "storage, typed only": ["-m", "bench.storage_variant", "typed"],
    "storage, bytes only": ["-m", "bench.storage_variant", "bytes"],
}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Measure:
    """One upload: wall time and the CPU-seconds each process spent on it."""

    seconds: float
    cpu: dict[str, float]  # storage / s3 / client
    rss: dict[str, float] = field(default_factory=dict)  # idle / warm / peak (storage paths)
    rows: int = 0


def measured(pids: dict[str, int], upload: Callable[[], T]) -> tuple[Measure, T]:
    """Run `upload`, timing it and counting the CPU of `pids` and of this client.
    Dirty pages of earlier uploads are written out first: the kernel would
    otherwise flush them during this one, on its time."""
    os.sync()
    window = CpuWindow(pids | {"client": os.getpid()})
    window.start()
    result = upload()
    window.stop()
    return Measure(window.seconds, window.used), result


def requests(path: Path, name: str = ""):
    header = dataset_pb2.UploadDatasetHeader(display_name=name or path.name)
    yield dataset_pb2.UploadDatasetRequest(header=header)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield dataset_pb2.UploadDatasetRequest(chunk=chunk)


def empty(s3: S3Server, bucket: str) -> None:
    """Remove the bucket's objects: every upload starts with the S3 server's
    folder as the first one did (the files written would pile up to GBs)."""
    client = s3.client()
    for item in client.list_objects(bucket, recursive=True):
        assert item.object_name is not None
        client.remove_object(bucket, item.object_name)


def fput(path: Path, s3: S3Server, bucket: str) -> Measure:
    client = s3.client()
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    assert s3.proc is not None
    measure, _ = measured(
        {"s3": s3.proc.pid}, lambda: client.fput_object(bucket, "file.csv", str(path), part_size=16 * 1024 * 1024)
    )
    empty(s3, bucket)
    return measure


def through_storage(path: Path, warm: Path, s3: S3Server, bucket: str, command: list[str], data: Path) -> Measure:
    if not s3.client().bucket_exists(bucket):
        s3.client().make_bucket(bucket)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")} | {
        "AUTOML_STORAGE_PORT": str(port),
        "AUTOML_DATA_DIR": str(data),
        "AUTOML_INTERNAL_SECRET": internal.SECRET,
        "AUTOML_BLOB_URL": f"s3://{bucket}",
        "AUTOML_S3_ENDPOINT": s3.endpoint,
        "AUTOML_S3_ACCESS_KEY": s3.access_key,
        "AUTOML_S3_SECRET_KEY": s3.secret_key,
        "AUTOML_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env)
    assert s3.proc is not None
    try:
        wait_serving(f"127.0.0.1:{port}", "automl.v1.Storage", proc)
        rss_idle = peak_rss_mb(proc.pid)
        with internal.channel(f"127.0.0.1:{port}") as channel:
            stub = storage_service_pb2_grpc.StorageStub(channel)
            # Warm-up: the service loads its CSV engine (pyarrow) on the first
            # upload; time the steady state, not that one-off import.
            stub.UploadDataset(requests(warm, "warm-up"), timeout=600)
            rss_warm = peak_rss_mb(proc.pid)
            measure, dataset = measured(
                {"storage": proc.pid, "s3": s3.proc.pid}, lambda: stub.UploadDataset(requests(path), timeout=3600)
            )
        measure.rss = {"idle": rss_idle, "warm": rss_warm, "peak": peak_rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        empty(s3, bucket)
    assert dataset.size_bytes == path.stat().st_size, "the whole file must arrive"
    measure.rows = dataset.row_count
    return measure


HEADER = (
    f"{'size MB':>7} {'path':<20} {'MB/s':>6} {'ratio':>5}  {'CPU-s per 100 MB: storage':>25} {'S3':>5} {'client':>6}"
    f"  {'CPU-bound ratio':>15}  {'RSS idle':>8} {'warm':>5} {'peak':>5}"
)


def row(size: int, name: str, measure: Measure, baseline: Measure) -> str:
    per_100mb = 100e6 / size
    cpu = {k: v * per_100mb for k, v in measure.cpu.items()}
    bound = baseline.seconds / (sum(measure.cpu.values()) / CORES)
    storage = f"{cpu['storage']:.2f}" if "storage" in cpu else "-"
    rss = measure.rss
    memory = f"{rss['idle']:>8.0f} {rss['warm']:>5.0f} {rss['peak']:>5.0f}" if rss else f"{'':>8} {'':>5} {'':>5}"
    return (
        f"{size / 1e6:>7.0f} {name:<20} {size / 1e6 / measure.seconds:>6.1f} {baseline.seconds / measure.seconds:>5.2f}"
        f"  {storage:>25} {cpu['s3']:>5.2f} {cpu['client']:>6.2f}  {bound:>15.2f}  {memory}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1024])
    parser.add_argument("--bounds", action="store_true", help="also the storage paths of bench/storage_variant.py")
    parser.add_argument("--repeat", type=int, default=1, help="measure each path this many times (median ratio)")
    parser.add_argument("--kind", choices=sorted(KINDS), default="mixed", help="the generated file (bench/csvgen.py)")
    args = parser.parse_args()
    binary = rclone_binary()
    if binary is None:
        raise SystemExit("rclone not found: install the dev dependencies (make venv)")
    paths = list(PATHS) if args.bounds else ["storage"]
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        work = Path(tmp)
        warm = write_csv(work / "warm-up.csv", 1024 * 1024, seed=1)
        s3 = S3Server(binary).start()
        try:
            print(f"{CORES} cores; CPU-bound ratio: fput's time / (the path's CPU-seconds / {CORES} cores)")
            print("each path's ratio is against the fput measured just before it (the machine's speed drifts)")
            print(HEADER)
            for size_mb in args.sizes_mb:
                path = write_csv(work / f"bench-{size_mb}.csv", size_mb * 1024 * 1024, seed=size_mb, kind=args.kind)
                size = path.stat().st_size
                ratios: dict[str, list[float]] = {name: [] for name in paths}
                for _ in range(args.repeat):
                    for number, name in enumerate(paths):
                        baseline = fput(path, s3, f"baseline-{size_mb}")
                        print(row(size, "fput (baseline)", baseline, baseline), flush=True)
                        measure = through_storage(
                            path, warm, s3, f"storage-{size_mb}-{number}", PATHS[name], work / f"data-{size_mb}"
                        )
                        print(row(size, name, measure, baseline) + f"  ({measure.rows} rows)", flush=True)
                        ratios[name].append(baseline.seconds / measure.seconds)
                        shutil.rmtree(work / f"data-{size_mb}")
                if args.repeat > 1:
                    for name, values in ratios.items():
                        print(
                            f"{size / 1e6:>7.0f} {name:<20} median ratio {statistics.median(values):.2f} "
                            f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)"
                        )
                path.unlink()
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
