"""Start, watch and stop the four services of the suite on this machine.

    python scripts/suite.py up      # foreground; Ctrl-C stops all four cleanly
    python scripts/suite.py start   # background; logs and pids under AUTOML_DATA_DIR
    python scripts/suite.py status  # health of each service
    python scripts/suite.py down    # stop a suite started with `start`
    python scripts/suite.py demo    # `start`, then show the suite at work

Ports, addresses and the data folder come from the same settings as the
services (automl.common.settings), so AUTOML_* variables apply to both.
This launcher is the embedded single-user set-up: unless AUTOML_AUTH is set,
it runs the gateway with AUTOML_AUTH=none (every caller is tenant "default").
Set AUTOML_AUTH=api_key to require keys (`python -m gateway.admin keys create`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from automl.common import health  # noqa: E402
from automl.common.settings import Settings, SettingsError, env_name  # noqa: E402

STARTUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Process:
    name: str
    module: str
    grpc_service: str
    port_field: str


# Start order: what a service calls starts before it.
PROCESSES = (
    Process("storage", "services.storage", "automl.v1.Storage", "storage_port"),
    Process("notifier", "services.notifier", "automl.v1.Notifier", "notifier_port"),
    Process("runner", "services.runner", "automl.v1.Runner", "runner_port"),
    Process("gateway", "gateway", "automl.v1.AutoML", "gateway_port"),
)


def port_of(settings: Settings, process: Process) -> int:
    return getattr(settings, process.port_field)


def pid_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "suite.json"


def check_ports_free(settings: Settings) -> None:
    wanted = [(p.port_field, port_of(settings, p)) for p in PROCESSES] + [("http_port", settings.http_port)]
    for field, port in wanted:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((settings.host, port))
            except OSError:
                raise SystemExit(
                    f"port {settings.host}:{port} is in use; stop what holds it or set {env_name(field)}"
                ) from None


def spawn(settings: Settings, background: bool) -> dict[str, subprocess.Popen[bytes]]:
    check_ports_free(settings)
    logs_dir = settings.data_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    children: dict[str, subprocess.Popen[bytes]] = {}
    for i, process in enumerate(PROCESSES):
        if i:  # what a service calls at start serves before it starts (wait_healthy reports failures)
            _await_serving(settings, PROCESSES[i - 1], children[PROCESSES[i - 1].name])
        out = open(logs_dir / f"{process.name}.log", "ab") if background else None  # noqa: SIM115
        children[process.name] = subprocess.Popen(
            [sys.executable, "-m", process.module],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT if background else None,
            start_new_session=background,
        )
    return children


def _await_serving(settings: Settings, process: Process, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    target = f"127.0.0.1:{port_of(settings, process)}"
    while child.poll() is None and time.monotonic() < deadline:
        if health.check(target, process.grpc_service, 1.0) == "SERVING":
            return
        time.sleep(0.1)


def wait_healthy(settings: Settings, children: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    pending = list(PROCESSES)
    while pending:
        process = pending[0]
        child = children[process.name]
        if child.poll() is not None:
            raise RuntimeError(f"{process.name} exited with code {child.returncode} while starting")
        if health.check(f"127.0.0.1:{port_of(settings, process)}", process.grpc_service, 1.0) == "SERVING":
            pending.pop(0)
        elif time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} not healthy after {STARTUP_TIMEOUT_S:.0f} s")
        else:
            time.sleep(0.1)


def stop(children: dict[str, int], grace: float) -> None:
    """SIGTERM every pid (gateway first), then SIGKILL what is left after grace + 5 s."""
    for name in reversed([p.name for p in PROCESSES]):
        if name in children:
            _signal(children[name], signal.SIGTERM)
    deadline = time.monotonic() + grace + 5
    while any(_alive(pid) for pid in children.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in children.values():
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:  # not our child (started by an earlier `start`)
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def print_status(settings: Settings) -> bool:
    healthy = True
    print(f"{'service':<10} {'address':<22} {'grpc service':<20} health")
    for process in PROCESSES:
        address = f"{settings.host}:{port_of(settings, process)}"
        state = health.check(f"127.0.0.1:{port_of(settings, process)}", process.grpc_service)
        healthy &= state == "SERVING"
        print(f"{process.name:<10} {address:<22} {process.grpc_service:<20} {state}")
    print(f"{'http':<10} {settings.host + ':' + str(settings.http_port):<22} {'metrics, health':<20}")
    return healthy


def cmd_up(settings: Settings) -> int:
    children = spawn(settings, background=False)
    pids = {name: child.pid for name, child in children.items()}
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        wait_healthy(settings, children)
        print_status(settings)
        print("suite is up; Ctrl-C stops it", flush=True)
        while not stopping and all(child.poll() is None for child in children.values()):
            time.sleep(0.2)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        stopping = False
    stop(pids, settings.shutdown_grace_seconds)
    codes = {name: child.wait() for name, child in children.items()}
    print("suite stopped: " + ", ".join(f"{name} exit {code}" for name, code in codes.items()))
    return 0 if stopping and all(code == 0 for code in codes.values()) else 1


def cmd_start(settings: Settings) -> int:
    path = pid_file(settings)
    if path.exists():
        running = {name: pid for name, pid in json.loads(path.read_text()).items() if _alive(pid)}
        if running:
            print(f"the suite already runs ({', '.join(running)}); `make down` stops it", file=sys.stderr)
            return 1
    children = spawn(settings, background=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: child.pid for name, child in children.items()}))
    try:
        wait_healthy(settings, children)
    except RuntimeError as exc:
        print(f"error: {exc}; logs in {settings.data_dir / 'logs'}", file=sys.stderr)
        stop({name: child.pid for name, child in children.items()}, settings.shutdown_grace_seconds)
        path.unlink(missing_ok=True)
        return 1
    print(f"suite started in the background; logs in {settings.data_dir / 'logs'}; `make down` stops it")
    return 0


def cmd_down(settings: Settings) -> int:
    path = pid_file(settings)
    if not path.exists():
        print("no suite started with `start`/`make demo` is recorded; nothing to stop")
        return 0
    pids = json.loads(path.read_text())
    stop(pids, settings.shutdown_grace_seconds)
    path.unlink()
    print("suite stopped")
    return 0


def cmd_status(settings: Settings) -> int:
    return 0 if print_status(settings) else 1


def cmd_demo(settings: Settings) -> int:
    if cmd_start(settings) != 0:
        return 1
    print()
    if not print_status(settings):
        return 1
    print()
    from scripts.demo_run import demo

    try:
        return demo(settings)
    except grpc.RpcError as exc:
        print(f"the demo run failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


def main() -> int:
    commands = {"up": cmd_up, "start": cmd_start, "down": cmd_down, "status": cmd_status, "demo": cmd_demo}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=commands)
    args = parser.parse_args()
    os.environ.setdefault("AUTOML_AUTH", "none")  # inherited by the four processes
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return commands[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
