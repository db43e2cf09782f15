"""Keep the suite's processes running: start them in order, restart one that
dies (with backoff, up to a limit), stop them all on request.

scripts/suite.py uses it for `make up` (in the foreground) and for the
background suite of `make demo` (in a launcher process of its own). It knows
processes, not gRPC: whether a child serves is a callable it is given.
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 0.2


@dataclass(frozen=True)
class Child:
    name: str
    argv: list[str]
    ready: Callable[[], bool]  # True once the child serves
    log: Path | None = None  # None: the child shares the launcher's stdout and stderr


@dataclass(frozen=True)
class Policy:
    max_restarts: int  # restarts of one child within window_s; past it the child is left down
    window_s: float
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def backoff(self, recent: int) -> float:
        """Delay before the next restart, given the restarts already made in the window:
        a child that keeps crashing is retried less and less often, not in a tight loop."""
        return min(self.first_backoff_s * 2**recent, self.max_backoff_s)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def say(line: str) -> None:
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"{stamp} launcher: {line}", flush=True)


@dataclass
class Slot:
    """One child and what the launcher knows of it."""

    child: Child
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    recent: deque[float] = field(default_factory=deque)  # monotonic times of the restarts within the window
    due: float | None = None  # monotonic time of a pending restart
    left_down: bool = False

    @property
    def state(self) -> str:
        if self.left_down:
            return "left down"
        if self.due is not None:
            return "waiting to restart"
        return "running" if self.proc is not None else "not started"


class Supervisor:
    def __init__(
        self,
        children: Sequence[Child],
        policy: Policy,
        *,
        cwd: Path,
        startup_timeout_s: float,
        on_change: Callable[[Supervisor], None] = lambda supervisor: None,
    ) -> None:
        self.slots = {child.name: Slot(child) for child in children}
        self.policy = policy
        self.cwd = cwd
        self.startup_timeout_s = startup_timeout_s
        self.on_change = on_change  # records pids, states and restarts for `make status` and `make down`
        self.phase = "starting"
        self.stopping = False

    def request_stop(self) -> None:
        """Safe in a signal handler: the loops notice it within POLL_S, and no
        child that exits from then on is mistaken for a crash."""
        self.stopping = True

    def start_all(self) -> None:
        """Start the children in order, each once the one before serves (what a
        service calls at start serves before it). RuntimeError names the child
        that did not come up."""
        for slot in self.slots.values():
            if self.stopping:
                return
            proc = self._spawn(slot)
            self.on_change(self)
            deadline = time.monotonic() + self.startup_timeout_s
            while not slot.child.ready():
                code = proc.poll()
                if self.stopping:
                    return
                if code is not None:
                    raise RuntimeError(f"{slot.child.name} exited ({describe_exit(code)}) while starting")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{slot.child.name} not serving after {self.startup_timeout_s:.0f} s")
                time.sleep(0.1)
        self.phase = "serving"
        self.on_change(self)

    def watch(self) -> None:
        """Restart the children that die until a stop is requested or every child is left down."""
        while not self.stopping:
            now = time.monotonic()
            for slot in self.slots.values():
                if self.stopping:  # a signal came in this pass: what exits now was asked to
                    break
                if slot.due is not None and now >= slot.due:
                    self._restart(slot)
                elif slot.due is None and not slot.left_down and slot.proc and slot.proc.poll() is not None:
                    self._died(slot, slot.proc.returncode, now)
            if all(slot.left_down for slot in self.slots.values()):
                say("every service is left down; the launcher stops")
                return
            time.sleep(POLL_S)

    def stop_all(self, grace_s: float) -> dict[str, int | None]:
        """SIGTERM every child (the last started first), SIGKILL what is left after
        grace + 5 s; the exit codes, None for a child never started."""
        self.stopping = True
        self.phase = "stopping"
        self.on_change(self)
        procs = [slot.proc for slot in reversed(self.slots.values()) if slot.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s + 5
        while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        codes = {name: slot.proc.wait() if slot.proc else None for name, slot in self.slots.items()}
        self.phase = "stopped"
        return codes

    def _died(self, slot: Slot, code: int, now: float) -> None:
        while slot.recent and now - slot.recent[0] > self.policy.window_s:
            slot.recent.popleft()
        name, limit = slot.child.name, self.policy.max_restarts
        if len(slot.recent) >= limit:
            slot.left_down = True
            say(
                f"{name} exited ({describe_exit(code)}) after {len(slot.recent)} restarts within "
                f"{self.policy.window_s:g} s, the limit: left down; the other services keep serving"
            )
        else:
            delay = self.policy.backoff(len(slot.recent))
            slot.due = now + delay
            say(f"{name} exited ({describe_exit(code)}); restart {len(slot.recent) + 1} of {limit} in {delay:g} s")
        self.on_change(self)

    def _restart(self, slot: Slot) -> None:
        slot.due = None
        slot.recent.append(time.monotonic())
        slot.restarts += 1
        proc = self._spawn(slot)
        say(f"{slot.child.name} restarted (pid {proc.pid}), restart {len(slot.recent)} of {self.policy.max_restarts}")
        self.on_change(self)

    def _spawn(self, slot: Slot) -> subprocess.Popen[bytes]:
        out = slot.child.log.open("ab") if slot.child.log else None
        try:
            proc = subprocess.Popen(
                slot.child.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                # A session of its own: a Ctrl-C or hang-up of the terminal reaches the
                # launcher alone, which then stops the children in order; a child that
                # got the signal itself would exit first and look like a crash.
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()  # the child has its own descriptor; the launcher must not leak one per restart
        slot.proc = proc
        return proc
