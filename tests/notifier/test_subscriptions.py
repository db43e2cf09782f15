"""Subscription tokens and webhooks, through the notifier process; webhooks are
POSTed to a real HTTP receiver started by the test."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest

from automl.v1 import event_pb2
from automl.v1 import notifier_service_pb2 as pb
from tests.notifier.conftest import readme_verify
from tests.notifier.test_events import publish

W = event_pb2.WebhookStatus


async def create(stub, tenant: str = "default", **fields) -> event_pb2.CreateSubscriptionResponse:
    return await stub.CreateSubscription(
        event_pb2.CreateSubscriptionRequest(subscription=event_pb2.Subscription(**fields)),
        metadata=[("x-automl-tenant", tenant)],
    )


async def read_events(call, count: int, timeout: float = 20) -> list[event_pb2.Event]:
    events = []
    async with asyncio.timeout(timeout):
        async for message in call:
            events += message.batch.events
            if len(events) >= count:
                return events
    return events


async def test_a_token_streams_its_filter_with_replay(services):
    run, other = services.new_run(), services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        created = await create(stub, run=run.name)
        assert created.token.startswith("sub_") and len(created.token) > 40
        assert created.subscription.name.startswith("subscriptions/")
        assert created.subscription.state == event_pb2.Subscription.STATE_ACTIVE
        assert created.webhook_secret == "", "no webhook, no secret"
        await publish(stub, other, 5)
        await publish(stub, run, 5)
        replayed = await read_events(
            stub.Subscribe(event_pb2.SubscribeRequest(token=created.token, after_global_sequence=0)), 5
        )
        assert [e.sequence for e in replayed] == [1, 2, 3, 4, 5] and {e.run for e in replayed} == {run.name}
        live = stub.Subscribe(event_pb2.SubscribeRequest(token=created.token))
        await live.wait_for_connection()
        await asyncio.sleep(0.2)
        await publish(stub, run, 3, start=5)
        assert [e.sequence for e in await read_events(live, 3)] == [6, 7, 8]
        live.cancel()


async def test_revoking_ends_open_streams_and_refuses_the_token(services):
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        created = await create(stub, run=run.name)
        stream = stub.Subscribe(event_pb2.SubscribeRequest(token=created.token))
        await stream.wait_for_connection()
        await asyncio.sleep(0.2)
        await stub.DeleteSubscription(event_pb2.DeleteSubscriptionRequest(name=created.subscription.name))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await read_events(stream, 1, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await read_events(stub.Subscribe(event_pb2.SubscribeRequest(token=created.token)), 1)
        shown = await stub.GetSubscription(event_pb2.GetSubscriptionRequest(name=created.subscription.name))
    assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED and "revoked" in refused.value.details()
    assert shown.state == event_pb2.Subscription.STATE_REVOKED


@pytest.mark.parametrize(
    ("token", "code"),
    [("sub_not-a-real-token", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)],
)
async def test_unknown_or_missing_tokens_are_refused(services, token, code):
    channel, stub = services.aio_notifier()
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_events(stub.Subscribe(event_pb2.SubscribeRequest(token=token)), 1)
    assert caught.value.code() is code


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "javascript:alert(1)", "http://"])
async def test_webhook_urls_must_be_http(services, url):
    channel, stub = services.aio_notifier()
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await create(stub, webhook_url=url)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "subscription.webhook_url" in caught.value.details()


async def test_subscriptions_belong_to_their_tenant(services):
    run = services.new_run(tenant="alice")
    channel, stub = services.aio_notifier()
    async with channel:
        created = await create(stub, tenant="alice", run=run.name)
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await stub.GetSubscription(
                event_pb2.GetSubscriptionRequest(name=created.subscription.name),
                metadata=[("x-automl-tenant", "bob")],
            )
        with pytest.raises(grpc.aio.AioRpcError) as foreign_run:
            await create(stub, tenant="bob", run=run.name)
        listed = await stub.ListSubscriptions(
            event_pb2.ListSubscriptionsRequest(), metadata=[("x-automl-tenant", "bob")]
        )
    assert hidden.value.code() is grpc.StatusCode.NOT_FOUND
    assert foreign_run.value.code() is grpc.StatusCode.NOT_FOUND
    assert created.subscription.name not in {s.name for s in listed.subscriptions}


# ------------------------------------------------------------------ webhooks


async def wait_for(predicate, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_webhooks_are_signed_retried_and_in_order(services, receiver):
    receiver.failures = {2: 2, 4: 1}  # event 2 fails twice, event 4 once: then accepted
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        await publish(stub, run, 2)  # before the subscription: not sent
        created = await create(stub, run=run.name, webhook_url=receiver.url)
        assert created.webhook_secret
        await publish(stub, run, 6, batch=2, start=2)
        await wait_for(lambda: len(receiver.accepted()) == 6)
        await asyncio.sleep(0.3)  # nothing more arrives
        status = (
            await stub.GetSubscription(event_pb2.GetSubscriptionRequest(name=created.subscription.name))
        ).webhook_status
    accepted = receiver.accepted()
    assert len(accepted) == 6 and len(receiver.attempts) == 6 + 2 + 1, "each failure retried, each event once"
    verify = readme_verify()
    sequences = []
    for attempt in accepted:
        signature = attempt.headers["x-automl-signature"]
        assert signature.startswith("t=") and ",v1=" in signature
        assert abs(int(signature[2:].split(",")[0]) - time.time()) < 60, "signed at delivery time"
        assert verify(created.webhook_secret, signature, attempt.body)
        assert not verify(created.webhook_secret, signature, attempt.body + b" "), "the body is signed"
        assert attempt.headers["content-type"] == "application/json"
        event = json.loads(attempt.body)
        assert event["run"] == run.name and attempt.headers["x-automl-event-type"] == event["type"]
        sequences.append(int(event["sequence"]))
    assert sequences == [3, 4, 5, 6, 7, 8], "in order, starting after the subscription was created"
    assert status.state == W.STATE_HEALTHY and status.failed_attempts == 0
    assert status.last_delivered_global_sequence == accepted[-1].delivery


async def test_a_webhook_that_keeps_failing_is_given_up_visibly(services, receiver):
    receiver.failures = {1: None}
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        created = await create(stub, run=run.name, webhook_url=receiver.url)
        await publish(stub, run, 3)
        request = event_pb2.GetSubscriptionRequest(name=created.subscription.name)
        async with asyncio.timeout(20):
            while (status := (await stub.GetSubscription(request)).webhook_status).state != W.STATE_GAVE_UP:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
    assert len(receiver.attempts) == 3, "AUTOML_WEBHOOK_MAX_ATTEMPTS=3, then no more"
    assert {a.delivery for a in receiver.attempts} == {receiver.attempts[0].delivery}, "the rest wait behind it"
    assert status.failed_attempts == 3 and status.last_error == "HTTP 500"
    assert status.last_delivered_global_sequence == 0


async def test_webhooks_resume_after_a_notifier_restart(own_services, receiver):
    run = own_services.new_run()
    channel, stub = own_services.aio_notifier()
    async with channel:
        created = await create(stub, run=run.name, webhook_url=receiver.url)
        await publish(stub, run, 3)
        await wait_for(lambda: len(receiver.accepted()) == 3)
    assert own_services.stop_notifier() == 0
    own_services.start_notifier()
    channel, stub = own_services.aio_notifier()
    async with channel:
        await publish(stub, run, 3, start=3)
        await wait_for(lambda: len(receiver.accepted()) == 6)
    assert [int(json.loads(a.body)["sequence"]) for a in receiver.accepted()] == [1, 2, 3, 4, 5, 6]
    assert created.subscription.webhook_url == receiver.url


async def test_bad_stream_requests_are_refused(services):
    channel, stub = services.aio_notifier()
    async with channel:
        for request, field_name in [
            (pb.StreamEventsRequest(run="runs/a", experiment="experiments/b"), "experiment"),
            (pb.StreamEventsRequest(end_with_run=True), "end_with_run"),
            (pb.StreamEventsRequest(after_sequence=3), "after_sequence"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await read_events(stub.StreamEvents(request), 1)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert field_name in caught.value.details()
