"""The suite launcher behind `make demo`, `make up`, `make status` and
`make down`, on free ports with its own data folder: real processes, no mocks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from automl.common import health
from tests.conftest import ROOT, SERVICES, suite_env

SUITE = [sys.executable, "scripts/suite.py"]


def run(env, command):
    return subprocess.run([*SUITE, command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def targets(env):
    return {name: f"127.0.0.1:{env[var]}" for name, _, _, var in SERVICES}


def run_dir(env) -> Path:
    return Path(env["AUTOML_DATA_DIR"]) / "run"


def pids(env) -> dict[str, int]:
    """The background suite's pid file: the launcher and each running service."""
    return json.loads((run_dir(env) / "suite.json").read_text())


def service_pid(env, name: str) -> int | None:
    """A service's pid from the state file, which `up` writes too."""
    return json.loads((run_dir(env) / "suite-state.json").read_text())["services"][name]["pid"]


def launcher_log(env) -> str:
    return (Path(env["AUTOML_DATA_DIR"]) / "logs" / "launcher.log").read_text()


def status(env) -> tuple[int, dict[str, list[str]]]:
    """`status`: its exit code and, for each service, its health and restarts columns."""
    result = run(env, "status")
    rows = {line.split()[0]: line.split()[3:] for line in result.stdout.splitlines()[1:] if len(line.split()) > 4}
    return result.returncode, rows


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30, during: Callable[[], None] = lambda: None):
    """Poll `condition`, calling `during` (which asserts) at every poll."""
    deadline = time.monotonic() + timeout
    while not condition():
        during()
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)


def replaced(env, name: str, killed: int) -> Callable[[], bool]:
    """Whether the background suite runs `name` again, in a new process that serves."""
    return lambda: pids(env).get(name, killed) != killed and serving(targets(env)[name])


def still_up(proc: subprocess.Popen[bytes], output: Path) -> Callable[[], None]:
    """For wait_for: fail at once, with its output, when the foreground `up` exits."""

    def check() -> None:
        assert proc.poll() is None, output.read_text(errors="replace")

    return check


def all_serving(env) -> Callable[[], bool]:
    return lambda: all(serving(target) for target in targets(env).values())


def serving(target: str) -> bool:
    return health.check(target, timeout=1.0) == "SERVING"


def suite_processes(env) -> list[int]:
    """Every live process (zombies aside) with this suite's environment: the
    launcher, the services and whatever they forked."""
    found = []
    marker = f"AUTOML_DATA_DIR={env['AUTOML_DATA_DIR']}".encode()
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and marker in (entry / "environ").read_bytes().split(b"\0")
                and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            ):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def time_wait_sockets(port: int) -> int:
    """Sockets in TIME_WAIT whose local port is `port` (state 06 in /proc/net/tcp*)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            columns = line.split()
            count += int(columns[1].rsplit(":", 1)[1], 16) == port and columns[3] == "06"
    return count


def test_demo_then_down(tmp_path):
    env = suite_env(tmp_path)
    try:
        demo = run(env, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert demo.stdout.count("SERVING") == 4
        # The run goes through the public gateway (auth off: the embedded default).
        assert "run finished: RUN_STATE_SUCCEEDED (STOP_REASON_TIME_BUDGET)" in demo.stdout
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


def test_up_in_foreground_restarts_a_killed_service_and_stops_all_four_on_ctrl_c(tmp_path):
    env = suite_env(tmp_path)
    with (tmp_path / "up.out").open("wb") as out:
        proc = subprocess.Popen([*SUITE, "up"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(all_serving(env), "suite", 60, still_up(proc, tmp_path / "up.out"))
        killed = service_pid(env, "notifier")
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: service_pid(env, "notifier") != killed and serving(targets(env)["notifier"]), "restart")
        code, rows = status(env)
        assert code == 0
        assert rows == {name: ["SERVING", "1" if name == "notifier" else "0"] for name in targets(env)}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    output = (tmp_path / "up.out").read_text(errors="replace")
    assert proc.returncode == 0, output
    assert "storage exit 0, notifier exit 0, runner exit 0, gateway exit 0" in output
    assert "notifier exited (killed by SIGKILL); restart 1 of 5 in 1 s" in output
    assert output.count(" restarted (pid ") == 1  # the stop restarted nothing
    for target in targets(env).values():
        assert health.check(target) == "UNREACHABLE"
    assert not (run_dir(env) / "suite-state.json").exists()


def test_background_suite_restarts_a_killed_runner_while_the_others_keep_serving(tmp_path):
    env = suite_env(tmp_path)
    seen: set[int] = set()
    try:
        started = run(env, "start")
        assert started.returncode == 0, started.stderr
        before = pids(env)
        seen.update(before.values())
        others = {name: target for name, target in targets(env).items() if name != "runner"}

        def others_serving() -> None:
            for name, target in others.items():
                assert serving(target), f"{name} stopped serving while the runner was down"

        os.kill(before["runner"], signal.SIGKILL)
        wait_for(replaced(env, "runner", before["runner"]), "runner back", during=others_serving)
        after = pids(env)
        seen.update(after.values())
        assert {name: after[name] for name in others} == {name: before[name] for name in others}  # never restarted
        code, rows = status(env)
        assert code == 0
        assert rows["runner"] == ["SERVING", "1"]
        assert all(rows[name] == ["SERVING", "0"] for name in others)
        assert "runner exited (killed by SIGKILL); restart 1 of 5 in 1 s" in launcher_log(env)
        assert f"runner restarted (pid {after['runner']}), restart 1 of 5" in launcher_log(env)
    finally:
        down = run(env, "down")
    assert down.returncode == 0, down.stderr
    # No orphans: the launcher, the services and what they forked are all gone.
    wait_for(lambda: not suite_processes(env), "clean stop", timeout=10)
    assert len(seen) == 6  # the launcher, four services, the runner's second process
    assert not (run_dir(env) / "suite.json").exists() and not (run_dir(env) / "suite-state.json").exists()


def test_down_and_up_at_once_after_a_crash(tmp_path):
    """A killed server leaves its connections in TIME_WAIT on its own port for a
    minute; the launcher must start again at once, as the servers can."""
    env = suite_env(tmp_path)
    ports = [int(env[var]) for *_, var in SERVICES] + [int(env["AUTOML_HTTP_PORT"])]
    try:
        assert run(env, "start").returncode == 0
        # Open connections, as clients of a live suite have, then kill every service:
        # the kernel closes the server ends first, which puts them in TIME_WAIT once
        # the clients close theirs.
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for port in ports]
        time.sleep(0.3)  # accepted by the servers
        for name, pid in pids(env).items():
            if name != "launcher":
                os.kill(pid, signal.SIGKILL)
        for client in clients:
            while client.recv(65536):  # read to the end: closing with unread bytes would reset, not close
                pass
            client.close()
    finally:
        down = run(env, "down")
    assert down.returncode == 0, down.stderr
    for port in ports:
        assert time_wait_sockets(port) >= 1, port
        with socket.socket() as probe:  # what the launcher checked before: refused for a minute
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                pass
            else:
                raise AssertionError(f"port {port}: TIME_WAIT did not block a plain bind")
    with (tmp_path / "up.out").open("wb") as out:
        up = subprocess.Popen([*SUITE, "up"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(all_serving(env), "suite", 60, still_up(up, tmp_path / "up.out"))
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
    assert up.returncode == 0, (tmp_path / "up.out").read_text(errors="replace")


def test_restart_limit_leaves_the_service_down_and_the_others_serving(tmp_path):
    env = suite_env(tmp_path)
    env["AUTOML_LAUNCHER_MAX_RESTARTS"] = "2"
    try:
        assert run(env, "start").returncode == 0
        for restart in (1, 2):
            killed = pids(env)["notifier"]
            os.kill(killed, signal.SIGKILL)
            wait_for(replaced(env, "notifier", killed), f"restart {restart}")
        os.kill(pids(env)["notifier"], signal.SIGKILL)
        wait_for(lambda: "left down" in launcher_log(env), "limit")
        time.sleep(1.5)  # past a first backoff: nothing restarts it
        code, rows = status(env)
        assert code == 1
        assert rows["notifier"] == ["UNREACHABLE", "2", "(left", "down)"]
        assert all(rows[name] == ["SERVING", "0"] for name in ("storage", "runner", "gateway"))
        assert "notifier" not in pids(env)
        log = launcher_log(env)
        assert "restart 1 of 2 in 1 s" in log and "restart 2 of 2 in 2 s" in log  # the backoff doubles
        assert "notifier exited (killed by SIGKILL) after 2 restarts within 300 s, the limit: left down" in log
    finally:
        down = run(env, "down")
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not suite_processes(env), "clean stop", timeout=10)


def test_busy_port_is_reported_before_anything_starts(tmp_path, suite):
    env = suite_env(tmp_path)
    env["AUTOML_GATEWAY_PORT"] = suite.target("gateway").rsplit(":", 1)[1]
    result = run(env, "start")
    assert result.returncode != 0
    assert "is in use" in result.stderr and "AUTOML_GATEWAY_PORT" in result.stderr
    for name, target in targets(env).items():
        if name != "gateway":
            assert health.check(target) == "UNREACHABLE"
    assert not suite_processes(env)
