"""Client streams a service refuses before their end."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

DRAIN_MAX_BYTES = 64 * 1024 * 1024
"""The most of a refused client stream read before the refusal is sent."""


async def drain(request_iterator: AsyncIterator[Any], max_bytes: int = DRAIN_MAX_BYTES) -> None:
    """Read and drop what the client still sends of a refused stream (up to
    `max_bytes`), so that the refusal is the call's status: a grpc.aio client
    (the gateway's, forwarding a stream) whose next send fails because the
    call already ended reports INTERNAL ("Internal error from Core") instead of
    the status sent (grpc/grpc#36066)."""
    left = max_bytes
    with contextlib.suppress(Exception):  # the client went away: the refusal stands
        async for message in request_iterator:
            left -= message.ByteSize() if hasattr(message, "ByteSize") else len(message)
            if left < 0:
                return
