"""The contracts: protos lint clean, stubs and the docs' generated tables (docs/api.md,
docs/configuration.md) fresh from them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BUF = ROOT / "node_modules" / ".bin" / "buf"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def vendor_googleapis(folder) -> None:
    """The google/api protos the contracts import, where buf.yaml looks for them."""
    result = run(sys.executable, "scripts/gen_protos.py", "--googleapis", str(folder))
    assert result.returncode == 0, result.stderr


def test_committed_stubs_match_a_fresh_generation():
    result = run(sys.executable, "scripts/gen_protos.py", "--check")
    assert result.returncode == 0, result.stderr


def test_openapi_document_is_fresh_and_valid():
    import json

    from openapi_spec_validator import validate

    result = run(sys.executable, "scripts/gen_openapi.py", "--check")
    assert result.returncode == 0, result.stderr
    validate(json.loads((ROOT / "gateway" / "openapi.json").read_text()))


def test_docs_generated_sections_are_fresh():
    result = run(sys.executable, "scripts/gen_docs.py", "--check")
    assert result.returncode == 0, result.stderr


def test_buf_lint_is_clean():
    if not BUF.exists():
        if os.environ.get("CI"):
            pytest.fail("buf is not installed: `make tools` (npm ci) must run before the tests in CI")
        pytest.skip("buf not installed (run `make tools`)")
    vendor_googleapis(ROOT / "build" / "googleapis")
    result = run(str(BUF), "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_catches_a_violation(tmp_path):
    """The lint test can fail: an undocumented, misnamed message is reported."""
    if not BUF.exists():
        pytest.skip("buf not installed (run `make tools`)")
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    vendor_googleapis(tmp_path / "build" / "googleapis")
    bad = tmp_path / "protos" / "automl" / "v1" / "bad.proto"
    bad.write_text(
        'syntax = "proto3";\npackage automl.v1;\noption go_package = "automl/v1;automlv1";\n'
        "message bad_name { int32 x = 1; }\n"
    )
    result = subprocess.run([str(BUF), "lint"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "should be PascalCase" in result.stdout
    assert "should have a non-empty comment" in result.stdout


def test_every_public_rpc_has_an_internal_home():
    """Each public RPC maps to an internal service method the gateway can forward to
    (by the same name, or by the documented internal verb)."""
    from automl.v1 import automl_service_pb2, notifier_service_pb2, runner_service_pb2, storage_service_pb2

    internal = {
        m.name
        for module, name in (
            (storage_service_pb2, "Storage"),
            (runner_service_pb2, "Runner"),
            (notifier_service_pb2, "Notifier"),
        )
        for m in module.DESCRIPTOR.services_by_name[name].methods
    }
    renamed = {
        "StartRun": "CreateRun",
        "StopRun": "StopExecution",
        "WatchRun": "StreamEvents",
        "TrainModel": "ExecuteTraining",
        # The gateway composes exports from pages of results (bounded memory).
        "ExportRunResults": "ListModelResults",
    }
    public = [m.name for m in automl_service_pb2.DESCRIPTOR.services_by_name["AutoML"].methods]
    missing = [m for m in public if renamed.get(m, m) not in internal]
    assert missing == []
