"""Test clients of the internal services: every call carries a suite
credential (automl.common.identity) made from the secret the test suites
are started with, as the suite's own services' calls do."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from automl.common import channels, identity
from automl.common.settings import Settings

SECRET = "test-internal-secret-0123456789abcdef"
"""AUTOML_INTERNAL_SECRET of every suite the tests start."""


def credentials(who: str = identity.GATEWAY) -> identity.Credentials:
    return identity.Credentials(SECRET.encode(), who)


def channel(target: str, who: str = identity.GATEWAY) -> grpc.Channel:
    """A blocking channel whose calls carry `who`'s credential."""
    return channels.blocking_channel(target, credentials(who))


def aio_channel(target: str, who: str = identity.GATEWAY, options: Sequence[tuple[str, int]] = ()) -> grpc.aio.Channel:
    """An asyncio channel whose calls carry `who`'s credential."""
    settings = Settings(internal_secret=SECRET)
    return grpc.aio.insecure_channel(
        target, options=list(options), interceptors=channels.interceptors(settings, credentials(who))
    )
