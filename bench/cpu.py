"""CPU-seconds of processes and of the machine, read from /proc, for the benchmarks
that say which process spends what."""

from __future__ import annotations

import os
import time
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """CPU seconds of named processes (and the machine) between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}
        self.machine_cores = 0.0
        self.seconds = 0.0

    def start(self) -> None:
        self._t = time.monotonic()
        self._cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_busy()

    def stop(self) -> None:
        self.seconds = time.monotonic() - self._t
        self.used = {name: cpu_seconds(pid) - self._cpu[name] for name, pid in self.pids.items()}
        busy, total = machine_busy()
        ncpu = os.cpu_count() or 1
        self.machine_cores = (busy - self._machine[0]) / max(total - self._machine[1], 1e-9) * ncpu
