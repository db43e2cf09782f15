"""Shared test helpers: free ports and the four services as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from automl.common import health
from tests import internal
from tests.ports import free_port

pytest_plugins = ["tests.servers"]

ROOT = Path(__file__).resolve().parent.parent

# name, module, gRPC service, port variable
SERVICES = (
    ("storage", "services.storage", "automl.v1.Storage", "AUTOML_STORAGE_PORT"),
    ("notifier", "services.notifier", "automl.v1.Notifier", "AUTOML_NOTIFIER_PORT"),
    ("runner", "services.runner", "automl.v1.Runner", "AUTOML_RUNNER_PORT"),
    ("gateway", "gateway", "automl.v1.AutoML", "AUTOML_GATEWAY_PORT"),
)


def suite_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a suite on free ports with its own data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")}
    env.update({var: str(free_port()) for *_, var in SERVICES})
    env["AUTOML_HTTP_PORT"] = str(free_port())
    env["AUTOML_DATA_DIR"] = str(tmp_path / "data")
    env["AUTOML_SHUTDOWN_GRACE_SECONDS"] = "2"
    env["AUTOML_INTERNAL_SECRET"] = internal.SECRET
    return env


def spawn(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m module` with its output in `log`. A long-lived process must
    not log into a pipe nobody reads: once the pipe is full, the process blocks."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out, stderr=out)


def _output(proc: subprocess.Popen[bytes], log: Path | None) -> str:
    if log is not None:
        return log.read_text(errors="replace")
    return proc.stderr.read().decode(errors="replace") if proc.stderr else ""


def wait_serving(
    target: str,
    service: str,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 30,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while health.check(target, service, 1.0) != "SERVING":
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{service} exited with {proc.returncode}: {_output(proc, log)[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{service} at {target} not SERVING after {timeout} s")
        time.sleep(0.1)


@dataclass
class Suite:
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def target(self, name: str) -> str:
        var = next(v for n, _, _, v in SERVICES if n == name)
        return f"127.0.0.1:{self.env[var]}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.env['AUTOML_HTTP_PORT']}"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """The four services as real processes, started with `python -m`."""
    folder = tmp_path_factory.mktemp("suite")
    running = Suite(suite_env(folder))
    try:
        for name, module, service, _ in SERVICES:
            log = folder / f"{name}.log"
            proc = spawn(module, running.env, log)
            running.procs[name] = proc
            wait_serving(running.target(name), service, proc, log=log)
        yield running
    finally:
        for proc in running.procs.values():
            proc.terminate()
        for proc in running.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
