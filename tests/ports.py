"""Free loopback ports for the servers tests start."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free loopback port below the ephemeral range: a port the kernel hands
    out as port 0 is also the next one it may give an outgoing connection,
    which then holds it when the server that was told to use it binds."""
    low, _ = _ephemeral_range()
    for _ in range(1000):
        port = random.randrange(10_000, low if low > 11_000 else 30_000)
        if port in _given:  # handed out already, maybe not bound yet
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _given.add(port)
            return port
    raise RuntimeError("no free loopback port found")


_given: set[int] = set()
