"""The gateway's open-streams quota (gateway/quotas.py, issue 21 item 3): a
tenant holds at most AUTOML_TENANT_MAX_OPEN_STREAMS WatchRun and Subscribe
streams at once; one more is refused RESOURCE_EXHAUSTED until one closes, and
a stream that ends in any way (closed, cancelled, failed) gives its place back.
The servicer runs in-process over fake backends: no other service is needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from automl.common import context, errors
from automl.common.settings import Settings
from automl.v1 import event_pb2
from gateway.quotas import StreamQuota
from gateway.servicer import AutoMLServicer


class FakeNotifier:
    def Subscribe(self, request: event_pb2.SubscribeRequest) -> AsyncIterator[Any]:
        async def forever() -> AsyncIterator[Any]:
            yield event_pb2.SubscribeResponse()
            await asyncio.Event().wait()

        return forever()


class FakeStorage:
    async def GetRun(self, request: Any) -> Any:
        raise errors.NotFound(f"{request.name} does not exist")


class FakeBackends:
    def __init__(self, limit: int) -> None:
        self.settings = Settings(tenant_max_open_streams=limit)
        self.notifier = FakeNotifier()
        self.storage = FakeStorage()


async def open_stream(servicer: AutoMLServicer, tenant: str) -> asyncio.Task:
    """A Subscribe stream of `tenant` that got its first message and stays open."""
    context.tenant.set(tenant)
    stream = servicer.Subscribe(event_pb2.SubscribeRequest(token="t"), None)
    await anext(stream)

    async def hold() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(hold())
    await asyncio.sleep(0)  # the task waits in the stream: a cancel reaches the servicer's generator
    return task


def test_the_quota_counts_per_tenant_and_forgets_closed_streams():
    quota = StreamQuota(2)
    with quota.hold("a"), quota.hold("a"), quota.hold("b"):
        with pytest.raises(errors.ResourceExhausted) as caught, quota.hold("a"):
            pass
        assert "AUTOML_TENANT_MAX_OPEN_STREAMS (2)" in caught.value.message
        assert quota.open == {"a": 2, "b": 1}
    assert quota.open == {}
    unlimited = StreamQuota(0)
    with unlimited.hold("a"), unlimited.hold("a"), unlimited.hold("a"):
        assert unlimited.open == {"a": 3}


async def test_one_stream_past_the_quota_is_refused_until_one_closes():
    servicer = AutoMLServicer(FakeBackends(limit=2), control=None)  # type: ignore[arg-type]
    held = [await open_stream(servicer, "acme"), await open_stream(servicer, "acme")]
    with pytest.raises(errors.ResourceExhausted) as caught:
        await open_stream(servicer, "acme")
    assert "holds 2 open streams" in caught.value.message
    other = await open_stream(servicer, "other")  # a quota per tenant
    held[0].cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await held[0]
    held[0] = await open_stream(servicer, "acme")
    for task in (*held, other):
        task.cancel()
    await asyncio.gather(*held, other, return_exceptions=True)
    assert servicer.streams.open == {}


async def test_a_watch_that_fails_gives_its_place_back():
    servicer = AutoMLServicer(FakeBackends(limit=1), control=None)  # type: ignore[arg-type]
    context.tenant.set("acme")
    for _ in range(3):
        with pytest.raises(errors.NotFound):
            async for _ in servicer.WatchRun(event_pb2.WatchRunRequest(name="runs/r1"), None):
                pass
    assert servicer.streams.open == {}
