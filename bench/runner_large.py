"""A search on a large CSV: how soon it starts, how much memory the runner holds.

Generates a mixed-type CSV of about SIZE MB (bench/csvgen.py), uploads it
through the storage service, and starts a run on it with the runner's default
sample of 1 million cells:

    .venv/bin/python bench/runner_large.py [--size-mb 1024] [--models 2]

Figures, each beside its baseline measured in the same run:
- time from ExecuteRun to the run's RUN_STARTED event (the dataset streamed
  from storage, its target read, the holdout split off, the sample read)
  against the time this script takes to stream the same dataset from storage
  into a file, the floor of any search on it;
- the runner's peak resident memory (VmHWM) against its resident memory when
  idle, and against the size of the file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from automl.v1 import common_pb2, dataset_pb2, experiment_pb2  # noqa: E402
from bench.csvgen import write_csv  # noqa: E402
from tests.runner.conftest import start_stack, stop_stack  # noqa: E402


def memory(pid: int, field: str) -> int:
    """VmRSS or VmHWM of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--models", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = write_csv(Path(tmp) / "large.csv", int(args.size_mb * 2**20))
        size = csv.stat().st_size
        folder = Path(tmp) / "suite"
        folder.mkdir()
        s = start_stack(folder, {"AUTOML_RUNNER_STOP_GRACE_SECONDS": "1"})
        try:
            started = time.perf_counter()
            with csv.open("rb") as f:
                requests = [dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(display_name="l"))]
                dataset = s.storage.UploadDataset(
                    iter(
                        requests + [dataset_pb2.UploadDatasetRequest(chunk=c) for c in iter(lambda: f.read(2**20), b"")]
                    ),
                    timeout=3600,
                )
            print(
                f"{size / 2**20:,.0f} MiB, {dataset.row_count:,} rows uploaded in {time.perf_counter() - started:.1f} s"
            )
            started = time.perf_counter()
            with (Path(tmp) / "copy.csv").open("wb") as out:
                for message in s.storage.DownloadDataset(dataset_pb2.DownloadDatasetRequest(name=dataset.name)):
                    out.write(message.chunk)
            download = time.perf_counter() - started
            (Path(tmp) / "copy.csv").unlink()
            experiment = s.storage.CreateExperiment(
                experiment_pb2.CreateExperimentRequest(
                    experiment=experiment_pb2.Experiment(
                        dataset=dataset.name,
                        target_column="label",
                        task=common_pb2.TASK_CLASSIFICATION,
                        cv_folds=3,
                        allowed_model_families=["LogisticRegression", "LGBMClassifier"],
                    )
                ),
                timeout=30,
            )
            runner = s.procs["runner"].pid
            idle = memory(runner, "VmRSS")
            run = s.new_run(experiment, workers=2, max_models=args.models)
            started = time.perf_counter()
            s.execute(run)
            while not any(e.HasField("run_started") for e in s.events(run)):
                time.sleep(0.05)
            start = time.perf_counter() - started
            end = s.wait_end(run, timeout=3600)
            peak = memory(runner, "VmHWM")
            searched = next(e.run_started for e in s.events(run) if e.HasField("run_started"))
            print(
                f"search started after {start:.1f} s on a sample of {searched.search_rows:,} rows "
                f"({searched.holdout_rows:,} held out); streaming the dataset alone took {download:.1f} s: "
                f"ratio {start / download:.2f}"
            )
            print(
                f"runner memory: idle {idle / 2**20:,.0f} MiB, peak {peak / 2**20:,.0f} MiB "
                f"(x{peak / idle:.1f} idle, {peak / size:.2f} of the file's size); "
                f"run {common_pb2.RunState.Name(end.state)}, {end.models_evaluated} models"
            )
        finally:
            stop_stack(s)


if __name__ == "__main__":
    main()
