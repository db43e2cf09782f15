"""aikit 0.2.2 on the pinned stack, through services.runner.aikit_compat:
every module the runner uses imports, and a real search runs with no
candidate failing for an incompatibility."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.runner import aikit_compat
from tests.conftest import ROOT


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_every_module_the_runner_uses_imports():
    result = run_python(
        "import sys\n"
        "from services.runner import aikit_compat\n"
        "aikit_compat.load()\n"
        "missing = [m for m in aikit_compat.MODULES if m not in sys.modules]\n"
        "print('missing', missing)\n"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "missing []" in result.stdout
    assert "I wont be able" not in result.stdout, "aikit's import notices go to the log, not stdout"


def test_importing_aikit_first_is_refused():
    result = run_python("import aikit\nfrom services.runner import aikit_compat\naikit_compat.load()\n")
    assert result.returncode != 0
    assert "aikit was imported before services.runner.aikit_compat.load()" in result.stderr


def test_another_stack_fails_at_start_naming_the_package(monkeypatch):
    monkeypatch.setitem(aikit_compat.TESTED, "scikit-learn", "0.23.2")
    with pytest.raises(aikit_compat.CompatError, match=r"scikit-learn 1\.5\.2 \(tested: 0\.23\.2\)"):
        aikit_compat._check_versions()


def test_a_patch_whose_target_moved_fails_loudly():
    def moved() -> None:
        raise AttributeError("module 'sklearn.utils' has no attribute '_safe_indexing'")

    with pytest.raises(aikit_compat.CompatError, match="patch moved no longer applies"):
        aikit_compat._apply(moved)


@pytest.mark.slow
def test_a_real_search_has_no_incompatibility_errors(tmp_path):
    """Twenty candidates drawn by aikit's own queue (defaults, exploration,
    guided proposals past ten results), cross-validated by aikit's job runner,
    in a fresh process so that nothing else has touched aikit."""
    code = f"""
import json
from services.runner import aikit_compat
aikit_compat.load()
from sklearn.datasets import load_breast_cancer
from aikit.ml_machine import AutoMlConfig, JobConfig, MlJobRunner, AutoMlResultReader, AutoMlModelGuider
from aikit.ml_machine.ml_machine import JobManagerQueue
from aikit.ml_machine.data_persister import FolderDataPersister, SavingType

X, y = load_breast_cancer(return_X_y=True, as_frame=True)
config = AutoMlConfig(dfX=X, y=y)
config.guess_everything()
job = JobConfig()
job.guess_cv(auto_ml_config=config, n_splits=3)
job.guess_scoring(auto_ml_config=config)
persister = FolderDataPersister(base_folder={str(tmp_path)!r})
guider = AutoMlModelGuider(result_reader=AutoMlResultReader(persister), job_config=job)
queue = JobManagerQueue(config, job, guider, persister, random_state=0)
runner = MlJobRunner(X, y, None, config, job, persister, seed=0)
runner.prepare()
report = []
for _ in range(20):
    job_id = queue.remove()
    param = persister.read(job_id, path="job_param", write_type=SavingType.json)
    failed, out = runner.do_job(job_id, param)
    report.append({{"type": param["job_type"], "error": out if failed else None,
                    "model": str(param["model_json"])[:60]}})
print("REPORT" + json.dumps(report))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = __import__("json").loads(result.stdout.split("REPORT", 1)[1])
    assert len(report) == 20
    assert [r for r in report if r["error"]] == [], "no candidate fails"
    assert {r["type"] for r in report} >= {"default", "exploration", "guided"}
