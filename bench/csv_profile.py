"""Rate of the CSV profile alone, in-process, against pyarrow's own read of the
same file: what the storage service can validate and profile per second when
it has the machine's cores to itself (in production the S3 server runs
elsewhere; bench/storage_upload.py measures the upload with it on the same
cores).

On a generated CSV (bench/csvgen.py), interleaved, best of --repeat:
  parse      pyarrow's streaming CSV reader with the profile's options (every
             column as text, one thread), no statistics: the baseline
  serial     profile_csv with the statistics in the parse's thread, one
             batch after the other (as before the parse got a thread of its own)
  profile    profile_csv as the service runs it (parse and statistics in two
             threads, csvprofile._parsed_ahead)
and prints MB/s, CPU-seconds per 100 MB and each rate as a ratio of the
parse's. No goal is set for it; it shows what the statistics cost and what
the second thread gives back.

    .venv/bin/python bench/csv_profile.py [--size-mb 100] [--repeat 3] [--kind text]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.csvgen import KINDS, write_csv  # noqa: E402
from services.storage import csvprofile  # noqa: E402


def parse_only(path: Path) -> None:
    with open(path, "rb") as handle:
        scanner = csvprofile._Scanner(handle, "utf-8", 8 << 20)
        _, reader = csvprofile._batches(scanner, csvprofile.CsvFormat())
        for _ in reader:
            pass


def profile(path: Path) -> None:
    with open(path, "rb") as handle:
        csvprofile.profile_csv(handle, csvprofile.CsvFormat())


def in_one_thread(reader: Any, readahead: Any) -> Iterator[Any]:
    while True:
        with readahead.waiting():
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
        readahead.took()
        yield batch


def serial(path: Path) -> None:
    threaded = csvprofile._parsed_ahead
    csvprofile._parsed_ahead = in_one_thread
    try:
        profile(path)
    finally:
        csvprofile._parsed_ahead = threaded


def measure(run: Callable[[Path], None], path: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(path)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kind", choices=sorted(KINDS), default="mixed", help="the generated file (bench/csvgen.py)")
    args = parser.parse_args()
    runs = {"parse": parse_only, "serial": serial, "profile": profile}
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        path = write_csv(Path(tmp) / "profile.csv", args.size_mb << 20, kind=args.kind)
        size = path.stat().st_size
        profile(path)  # warm-up: imports, first allocations
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, run in runs.items():
                wall, cpu = measure(run, path)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu)
    print(f"{size / 1e6:.0f} MB of {args.kind} CSV, best of {args.repeat} (interleaved)")
    print(f"{'path':<8} {'MB/s':>7} {'CPU-s/100MB':>12} {'rate / parse':>13}")
    for name, (wall, cpu) in best.items():
        print(f"{name:<8} {size / 1e6 / wall:>7.1f} {cpu * 1e8 / size:>12.2f} {best['parse'][0] / wall:>13.2f}")
    print(f"profile / serial: {best['serial'][0] / best['profile'][0]:.2f}x the rate")


if __name__ == "__main__":
    main()
