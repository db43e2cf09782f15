"""Every public RPC fuzzed at volume over gRPC and HTTP/JSON (issue 21).

Starts the four services as real processes with API keys on (the suite of
tests/gateway/conftest.py), makes the pool of resources whose names the
generator uses (a dataset, an experiment, a finished run, a trained model, a
subscription, and spares for the Delete methods), then sends each RPC
--examples generated calls over each transport, the generator of
tests/fuzzing.py (requests and CSV files from the proto descriptors) with a
random seed (--seed to repeat a run). Every call that returns starts the next;
a started run is stopped at once.

Reports per RPC and transport: examples, seconds, the answers (gRPC codes,
HTTP statuses; `+CODE` for an error inside a streamed HTTP answer), server
errors (gRPC INTERNAL or UNKNOWN, HTTP 5xx or an INTERNAL/UNKNOWN error in a
stream; goal 0), rows left by refused requests (goal 0) and records kept on
purpose (a refused StartRun's ended run, a refused TrainModel's FAILED
model), and storage's peak RSS so far (VmHWM of the process; goal < 200 MB
throughout). At the end: runs or models still under way, orphans (blob
files no contents row names, temporary files, contents rows nothing uses,
rows whose blob is gone; goal 0), and the findings, one line each with the
request that caused it.

    .venv/bin/python -m bench.fuzz [--examples 10000] [--methods GetRun Predict ...]
        [--transports grpc http] [--seed N] [--json FILE]

Exit status 0 when every goal is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzzing import FUZZ_ENV, METHODS, STORAGE_GOAL_MB, Target, make_pool
from tests.gateway.conftest import start_gateway_suite, stop_gateway_suite
from tests.runner.conftest import sklearn_csv


def _statuses(counter) -> str:
    return ", ".join(f"{status} {n}" for status, n in counter.most_common())


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000, help="per RPC and transport (default 10,000)")
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=METHODS)
    parser.add_argument("--transports", nargs="*", choices=["grpc", "http"], default=["grpc", "http"])
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: random, printed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # a kill ends the run as Ctrl-C does: the suite is stopped
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"fuzz: {args.examples} examples per RPC and transport, seed {seed}", flush=True)

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="automl-bench-fuzz-") as tmp:
        folder = Path(tmp) / "suite"
        folder.mkdir()
        suite = start_gateway_suite(folder, FUZZ_ENV)
        target = None
        rows = []
        try:
            target = Target(
                suite.target, suite.http, suite.api_key, Path(suite.env["AUTOML_DATA_DIR"]), suite.stack.procs
            )
            started = time.monotonic()
            target.pool = make_pool(suite.client("alpha"), sklearn_csv("iris"), "target")
            print(
                f"pool made in {time.monotonic() - started:.0f} s; storage peak RSS so far "
                f"{target.storage_peak_mb():.0f} MB",
                flush=True,
            )
            header = (
                f"{'rpc':<20} {'door':<5} {'examples':>8} {'s':>6} {'5xx/INT':>7} {'left':>4} {'kept':>4} "
                f"{'peak MB':>7}  answers"
            )
            print(header, flush=True)
            for method in args.methods:
                for transport in args.transports:
                    report = target.fuzz(method, transport, args.examples, derandomize=False, seed=seed)
                    peak = target.storage_peak_mb()
                    rows.append(
                        {
                            "rpc": method,
                            "transport": transport,
                            "examples": report.examples,
                            "seconds": round(report.seconds, 1),
                            "server_errors": report.server_errors,
                            "left_rows": report.left_rows,
                            "kept_records": report.kept_records,
                            "storage_peak_mb": round(peak, 1),
                            "statuses": dict(report.statuses),
                            "samples": report.samples,
                        }
                    )
                    print(
                        f"{method:<20} {transport:<5} {report.examples:>8} {report.seconds:>6.0f} "
                        f"{report.server_errors:>7} {report.left_rows:>4} {report.kept_records:>4} {peak:>7.0f}  "
                        f"{_statuses(report.statuses)}",
                        flush=True,
                    )
                    if dead := target.dead():
                        print(f"services ended: {dead}; stopping", flush=True)
                        break
                if target.dead():
                    break
            busy = target.settle(timeout=120)
            orphans = target.orphans()
            peak = target.storage_peak_mb()
            findings = target.findings
            dead = target.dead()
        finally:
            if target is not None:
                target.close()
            stop_gateway_suite(suite)

    server_errors = sum(r["server_errors"] for r in rows)
    left = sum(r["left_rows"] for r in rows)
    orphan_count = sum(len(v) for v in orphans.values())
    print()
    print(
        f"examples: {sum(r['examples'] for r in rows)} over {len(rows)} RPC x transport pairs "
        f"in {time.monotonic() - began:.0f} s"
    )
    print(f"server errors (gRPC INTERNAL/UNKNOWN, HTTP 5xx): {server_errors} (goal 0)")
    print(
        f"rows left by refused requests: {left} (goal 0); records kept on purpose: "
        f"{sum(r['kept_records'] for r in rows)}"
    )
    print(f"orphans: {orphan_count} (goal 0) {json.dumps({k: v[:5] for k, v in orphans.items() if v})}")
    print(f"still under way after the run: {len(busy)} {busy[:5]}")
    print(f"storage peak RSS: {peak:.0f} MB (goal < {STORAGE_GOAL_MB} MB)")
    if dead:
        print(f"services ended during the run: {dead}")
    seen = set()
    for f in findings:
        key = (f.transport, f.method, f.kind, f.status, f.message[:60])
        if key in seen:
            continue
        seen.add(key)
        print(f"  {f.kind}: {f.transport} {f.method} -> {f.status} {f.message[:200]!r}\n      request: {f.request}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seed": seed,
                    "examples_per_rpc_and_transport": args.examples,
                    "rows": rows,
                    "orphans": orphans,
                    "busy": busy,
                    "storage_peak_mb": peak,
                    "findings": [f.__dict__ for f in findings],
                },
                indent=1,
            )
        )
    ok = not server_errors and not left and not orphan_count and not busy and peak < STORAGE_GOAL_MB and not dead
    print("goals:", "MET" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
