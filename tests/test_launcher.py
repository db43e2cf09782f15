"""The suite launcher behind `make demo`, `make up` and `make down`, on free
ports with its own data folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from automl.common import health
from tests.conftest import ROOT, SERVICES, suite_env

SUITE = [sys.executable, "scripts/suite.py"]


def run(env, command):
    return subprocess.run([*SUITE, command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def targets(env):
    return {name: f"127.0.0.1:{env[var]}" for name, _, _, var in SERVICES}


def test_demo_then_down(tmp_path):
    env = suite_env(tmp_path)
    try:
        demo = run(env, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert demo.stdout.count("SERVING") == 4
        # The run goes through the public gateway (auth off: the embedded default).
        assert "run finished: RUN_STATE_SUCCEEDED (STOP_REASON_MAX_MODELS)" in demo.stdout
        assert "leaderboard of runs/" in demo.stdout
        for name, target in targets(env).items():
            assert health.check(target) == "SERVING", name
        again = run(env, "start")
        assert again.returncode == 1
        assert "already runs" in again.stderr
        assert (tmp_path / "data" / "logs" / "gateway.log").exists()
    finally:
        down = run(env, "down")
    assert down.returncode == 0
    assert "suite stopped" in down.stdout
    for target in targets(env).values():
        assert health.check(target) == "UNREACHABLE"
    assert not (tmp_path / "data" / "run" / "suite.json").exists()


def test_up_in_foreground_stops_all_four_on_ctrl_c(tmp_path):
    env = suite_env(tmp_path)
    proc = subprocess.Popen([*SUITE, "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not all(health.check(t) == "SERVING" for t in targets(env).values()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert b"storage exit 0, notifier exit 0, runner exit 0, gateway exit 0" in out
    for target in targets(env).values():
        assert health.check(target) == "UNREACHABLE"


def test_busy_port_is_reported_before_anything_starts(tmp_path, suite):
    env = suite_env(tmp_path)
    env["AUTOML_GATEWAY_PORT"] = suite.target("gateway").rsplit(":", 1)[1]
    result = run(env, "start")
    assert result.returncode != 0
    assert "is in use" in result.stderr and "AUTOML_GATEWAY_PORT" in result.stderr
    for name, target in targets(env).items():
        if name != "gateway":
            assert health.check(target) == "UNREACHABLE"
