"""Start, watch and stop the four services of the suite on this machine.

    python scripts/suite.py up      # foreground; Ctrl-C stops all four cleanly
    python scripts/suite.py start   # background; logs and pids under AUTOML_DATA_DIR
    python scripts/suite.py status  # health and restarts of each service
    python scripts/suite.py down    # stop a suite started with `start`
    python scripts/suite.py demo    # `start`, then show the suite at work
    (python scripts/suite.py supervise: the background launcher `start` runs)

Both `up` and `start` supervise the services (scripts/supervise.py): one that
dies is restarted with backoff, up to AUTOML_LAUNCHER_MAX_RESTARTS times within
AUTOML_LAUNCHER_RESTART_WINDOW_SECONDS, while the others keep serving. `start`
runs that launcher as a background process; its pid and the services' pids are
in <data dir>/run/suite.json (what `down` stops), their states and restarts in
<data dir>/run/suite-state.json (what `status` shows).

Ports, addresses and the data folder come from the same settings as the
services (automl.common.settings), so AUTOML_* variables apply to both.
This launcher is the embedded single-user set-up: unless AUTOML_AUTH is set,
it runs the gateway with AUTOML_AUTH=none (every caller is tenant "default").
Set AUTOML_AUTH=api_key to require keys (`python -m gateway.admin keys create`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from automl.common import health  # noqa: E402
from automl.common.settings import Settings, SettingsError, env_name  # noqa: E402
from scripts.supervise import Child, Policy, Supervisor, say  # noqa: E402

STARTUP_TIMEOUT_S = 30.0
LAUNCHER = "launcher"  # key of the background launcher's pid in the pid file


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


def state_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "suite-state.json"


def check_ports_free(settings: Settings) -> None:
    """Refuse to start when a process listens on one of the suite's ports.

    The probe binds the way the servers do (gRPC and uvicorn set SO_REUSEADDR
    on POSIX): sockets in TIME_WAIT left by a server that was killed do not
    stop the servers from binding, so they must not stop the launcher for the
    minute they last either. A listening socket refuses the bind all the same.
    (On Windows SO_REUSEADDR would let the bind through a listener: not set there.)"""
    wanted = [(p.port_field, port_of(settings, p)) for p in PROCESSES] + [("http_port", settings.http_port)]
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    for field, port in wanted:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((settings.host, port))
            except OSError as exc:
                variable = env_name(field)
                if exc.errno == errno.EADDRINUSE:
                    raise SystemExit(
                        f"port {settings.host}:{port} ({variable}) is in use: another process listens on it. "
                        f"Stop it (`make down` stops a suite started by `make demo`) or set {variable} to a free port"
                    ) from None
                raise SystemExit(f"cannot bind {settings.host}:{port} ({variable}): {exc.strerror}") from None


def _serving(settings: Settings, process: Process) -> bool:
    return health.check(f"127.0.0.1:{port_of(settings, process)}", process.grpc_service, 1.0) == "SERVING"


def make_supervisor(settings: Settings, background: bool) -> Supervisor:
    logs_dir = settings.data_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    children = [
        Child(
            process.name,
            [sys.executable, "-m", process.module],
            ready=functools.partial(_serving, settings, process),
            log=logs_dir / f"{process.name}.log" if background else None,
        )
        for process in PROCESSES
    ]
    policy = Policy(settings.launcher_max_restarts, settings.launcher_restart_window_seconds)
    return Supervisor(
        children,
        policy,
        cwd=ROOT,
        startup_timeout_s=STARTUP_TIMEOUT_S,
        on_change=functools.partial(_record, settings, background),
    )


def _record(settings: Settings, background: bool, supervisor: Supervisor) -> None:
    """Write what `status` shows (and, for the background suite, what `down` stops)."""
    services = {
        name: {"pid": slot.proc.pid if slot.proc else None, "state": slot.state, "restarts": slot.restarts}
        for name, slot in supervisor.slots.items()
    }
    _write_json(state_file(settings), {LAUNCHER: os.getpid(), "phase": supervisor.phase, "services": services})
    if background:
        running = {name: s["pid"] for name, s in services.items() if s["state"] == "running"}
        _write_json(pid_file(settings), {LAUNCHER: os.getpid(), **running})


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # a reader never sees half a file


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _forget(settings: Settings) -> None:
    """Remove the pid and state files if they are this process's."""
    for path in (pid_file(settings), state_file(settings)):
        if (_read_json(path) or {}).get(LAUNCHER) == os.getpid():
            path.unlink(missing_ok=True)


def _stop_on_signals(supervisor: Supervisor) -> None:
    def on_signal(signum: int, frame: object) -> None:
        supervisor.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


def stop_pids(pids: dict[str, int], grace: float) -> None:
    """SIGTERM every pid (the last started first), then SIGKILL what is left after grace + 5 s.
    For processes that are not this one's children (a launcher that was killed left them)."""
    for pid in reversed(pids.values()):
        _signal(pid, signal.SIGTERM)
    _wait_gone(list(pids.values()), grace + 5)
    for pid in pids.values():
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    """Whether pid runs. A zombie does not: the background launcher and its services
    outlive `start`, and whoever inherits them may be slow (or fail) to reap them."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the pid over
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all there is
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _running_suite(settings: Settings) -> list[str]:
    """Names of the processes of a suite `start` recorded that still run."""
    pids = _read_json(pid_file(settings)) or {}
    return [name for name, pid in pids.items() if _alive(pid)]


def _supervised(settings: Settings) -> dict[str, Any] | None:
    """The launcher's record, if the launcher that wrote it still runs."""
    record = _read_json(state_file(settings))
    return record if record and _alive(record.get(LAUNCHER, 0)) else None


def print_status(settings: Settings) -> bool:
    healthy = True
    services = (_supervised(settings) or {}).get("services", {})
    print(f"{'service':<10} {'address':<22} {'grpc service':<20} {'health':<12} restarts")
    for process in PROCESSES:
        address = f"{settings.host}:{port_of(settings, process)}"
        state = health.check(f"127.0.0.1:{port_of(settings, process)}", process.grpc_service)
        healthy &= state == "SERVING"
        entry = services.get(process.name)
        restarts = "-" if entry is None else str(entry["restarts"])
        if entry is not None and entry["state"] != "running":
            restarts += f" ({entry['state']})"
        print(f"{process.name:<10} {address:<22} {process.grpc_service:<20} {state:<12} {restarts}")
    print(f"{'http':<10} {settings.host + ':' + str(settings.http_port):<22} {'metrics, health':<20}")
    return healthy


def cmd_up(settings: Settings) -> int:
    running = _running_suite(settings)
    if running:
        print(f"a suite started by `make demo` runs ({', '.join(running)}); `make down` stops it", file=sys.stderr)
        return 1
    check_ports_free(settings)
    supervisor = make_supervisor(settings, background=False)
    _stop_on_signals(supervisor)
    try:
        supervisor.start_all()
        if not supervisor.stopping:
            print_status(settings)
            print("suite is up; a service that dies is restarted; Ctrl-C stops it", flush=True)
            supervisor.watch()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
    codes = supervisor.stop_all(settings.shutdown_grace_seconds)
    _forget(settings)
    print("suite stopped: " + ", ".join(f"{name} exit {code}" for name, code in codes.items() if code is not None))
    return 0 if supervisor.stopping and all(code == 0 for code in codes.values()) else 1


def cmd_supervise(settings: Settings) -> int:
    """The background launcher `start` runs: starts the services, restarts those
    that die, and stops them all on SIGTERM (from `down`)."""
    supervisor = make_supervisor(settings, background=True)
    _stop_on_signals(supervisor)
    _record(settings, True, supervisor)  # its own pid first: `down` can stop it from here on
    failed = False
    try:
        say(f"starting the suite (pid {os.getpid()})")
        supervisor.start_all()
        if not supervisor.stopping:
            say("the suite serves")
            supervisor.watch()
    except RuntimeError as exc:
        say(f"error: {exc}")
        failed = True
    finally:
        codes = supervisor.stop_all(settings.shutdown_grace_seconds)
        say("suite stopped: " + ", ".join(f"{name} exit {code}" for name, code in codes.items() if code is not None))
        _forget(settings)
    return 1 if failed else 0


def cmd_start(settings: Settings) -> int:
    running = _running_suite(settings)
    if running:
        print(f"the suite already runs ({', '.join(running)}); `make down` stops it", file=sys.stderr)
        return 1
    check_ports_free(settings)  # here, so that the error reaches the caller, not a log
    logs_dir = settings.data_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    with (logs_dir / "launcher.log").open("ab") as out:
        launcher = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "supervise"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives this command and the terminal
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S * len(PROCESSES) + 10
    try:
        while True:
            record = _read_json(state_file(settings)) or {}
            if record.get(LAUNCHER) == launcher.pid and record.get("phase") == "serving":
                break
            if launcher.poll() is not None or time.monotonic() > deadline:
                launcher.terminate()  # it stops what it started
                launcher.wait()
                lines = (logs_dir / "launcher.log").read_text(errors="replace").splitlines()
                error = next((line for line in reversed(lines) if "error:" in line), "the suite did not start")
                print(f"{error.split('launcher: ', 1)[-1]}; logs in {logs_dir}", file=sys.stderr)
                return 1
            time.sleep(0.1)
    except KeyboardInterrupt:
        launcher.terminate()
        launcher.wait()
        return 130
    print(f"suite started in the background; logs in {logs_dir}; `make down` stops it")
    return 0


def cmd_down(settings: Settings) -> int:
    path = pid_file(settings)
    pids = _read_json(path)
    if pids is None:
        print("no suite started with `start`/`make demo` is recorded; nothing to stop")
        return 0
    launcher = pids.pop(LAUNCHER, None)
    if launcher is not None and _alive(launcher):
        _signal(launcher, signal.SIGTERM)  # it stops the services, then itself, and removes its files
        if _wait_gone([launcher], settings.shutdown_grace_seconds + 10):
            pids = {}
        else:
            _signal(launcher, signal.SIGKILL)
            pids = {name: pid for name, pid in (_read_json(path) or pids).items() if name != LAUNCHER}
    # What no launcher stops: a launcher killed earlier (or stuck) left its services running.
    stop_pids({name: pid for name, pid in pids.items() if _alive(pid)}, settings.shutdown_grace_seconds)
    path.unlink(missing_ok=True)
    state_file(settings).unlink(missing_ok=True)
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
    commands = {
        "up": cmd_up,
        "start": cmd_start,
        "down": cmd_down,
        "status": cmd_status,
        "demo": cmd_demo,
        "supervise": cmd_supervise,
    }
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
