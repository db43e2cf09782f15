"""Webhook targets, error classes and secrets through the notifier process.

Only loopback targets are ever named here, or addresses the notifier must
refuse at creation; the refusal tests use a tenant with no events, so even a
notifier that wrongly accepted one would have nothing to deliver there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from automl.common import identity
from automl.v1 import event_pb2, storage_service_pb2, storage_service_pb2_grpc
from tests import internal
from tests.notifier.conftest import Services, readme_verify, start_services, stop_services
from tests.notifier.test_events import publish
from tests.notifier.test_subscriptions import create, wait_for
from tests.ports import free_port

W = event_pb2.WebhookStatus


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A storage and notifier pair with no allow-list: public addresses only."""
    running = start_services(tmp_path_factory.mktemp("strict"), {"AUTOML_WEBHOOK_ALLOW_NETWORKS": ""})
    try:
        yield running
    finally:
        stop_services(running)


async def refused(services: Services, url: str) -> grpc.aio.AioRpcError:
    """Create a webhook to `url` as a tenant with no events; it must be refused
    (and if it is not, it is deleted before anything could be delivered)."""
    tenant = f"probe-{uuid.uuid4().hex[:8]}"
    channel, stub = services.aio_notifier()
    async with channel:
        try:
            created = await create(stub, tenant=tenant, webhook_url=url)
        except grpc.aio.AioRpcError as exc:
            listed = await stub.ListSubscriptions(
                event_pb2.ListSubscriptionsRequest(), metadata=[("x-automl-tenant", tenant)]
            )
            assert not listed.subscriptions, "nothing stored"
            return exc
        await stub.DeleteSubscription(
            event_pb2.DeleteSubscriptionRequest(name=created.subscription.name), metadata=[("x-automl-tenant", tenant)]
        )
    raise AssertionError(f"{url} was accepted")


def loopback_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/hook",
        f"http://127.9.9.9:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://localhost:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        f"http://2130706433:{port}/hook",
        f"https://127.0.0.1:{port}/hook",
    ]


async def test_loopback_and_private_targets_are_refused_at_creation(strict):
    urls = [
        *loopback_urls(free_port()),
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.0.1/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0:9000/hook",
    ]
    for url in urls:
        caught = await refused(strict, url)
        assert caught.code() is grpc.StatusCode.INVALID_ARGUMENT, url
        details = caught.details()
        assert "subscription.webhook_url" in details and "public addresses only" in details, (url, details)
        assert "AUTOML_WEBHOOK_ALLOW_NETWORKS" in details, "says how an operator admits an on-premises receiver"


async def test_the_suites_own_ports_are_refused_even_when_loopback_is_allowed(services):
    env = services.env
    for var in ("AUTOML_STORAGE_PORT", "AUTOML_NOTIFIER_PORT", "AUTOML_GATEWAY_PORT", "AUTOML_HTTP_PORT"):
        for url in (f"http://127.0.0.1:{env[var]}/", f"http://localhost:{env[var]}/"):
            caught = await refused(services, url)
            assert caught.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "one of this suite's own services" in caught.details(), (url, caught.details())
    # The allow-list is 127.0.0.1/32: the rest of loopback stays refused.
    for url in (f"http://127.0.0.2:{free_port()}/", f"http://[::1]:{free_port()}/"):
        assert "a loopback address" in (await refused(services, url)).details()


async def test_a_closed_port_is_stored_as_connection_refused(services):
    run = services.new_run()
    url = f"http://127.0.0.1:{free_port()}/hook"  # admitted by the allow-list; nothing listens
    channel, stub = services.aio_notifier()
    async with channel:
        created = await create(stub, run=run.name, webhook_url=url)
        await publish(stub, run, 1)
        request = event_pb2.GetSubscriptionRequest(name=created.subscription.name)
        async with asyncio.timeout(20):
            while (status := (await stub.GetSubscription(request)).webhook_status).state != W.STATE_GAVE_UP:
                await asyncio.sleep(0.05)
    assert status.last_error == "connection refused", "a class, not the exception's text"
    assert status.failed_attempts == 3


async def test_deliveries_verify_with_the_readme_and_the_secret_is_stored_encrypted(services, receiver):
    run = services.new_run()
    channel, stub = services.aio_notifier()
    async with channel:
        created = await create(stub, run=run.name, webhook_url=receiver.url)
        await publish(stub, run, 2)
        await wait_for(lambda: len(receiver.accepted()) == 2)
    verify = readme_verify()
    for attempt in receiver.accepted():
        assert verify(created.webhook_secret, attempt.headers["x-automl-signature"], attempt.body)
    with internal.channel(services.storage_target, identity.NOTIFIER) as storage:
        stored = storage_service_pb2_grpc.StorageStub(storage).GetSubscriptionRecord(
            storage_service_pb2.GetSubscriptionRecordRequest(name=created.subscription.name),
            metadata=[("x-automl-tenant", "default")],
            timeout=10,
        )
    assert stored.webhook_secret.startswith("v1:") and created.webhook_secret not in stored.webhook_secret
    assert (Path(services.env["AUTOML_DATA_DIR"]) / "notifier-webhook.key").is_file()


async def test_a_secret_stored_in_clear_is_sealed_on_restart_and_still_signs(own_services, receiver):
    run = own_services.new_run()
    legacy = "legacy-secret-stored-before-sealing-existed"
    with internal.channel(own_services.storage_target, identity.NOTIFIER) as channel:
        storage = storage_service_pb2_grpc.StorageStub(channel)
        record = storage.CreateSubscriptionRecord(
            storage_service_pb2.CreateSubscriptionRecordRequest(
                record=storage_service_pb2.SubscriptionRecord(
                    subscription=event_pb2.Subscription(
                        run=run.name,
                        webhook_url=receiver.url,
                        state=event_pb2.Subscription.STATE_ACTIVE,
                        webhook_status=W(state=W.STATE_HEALTHY),
                    ),
                    token_sha256=uuid.uuid4().hex * 2,
                    webhook_secret=legacy,
                )
            ),
            metadata=[("x-automl-tenant", "default")],
            timeout=10,
        )
    assert own_services.stop_notifier() == 0
    own_services.start_notifier()
    get = storage_service_pb2.GetSubscriptionRecordRequest(name=record.subscription.name)

    def sealed() -> bool:
        with internal.channel(own_services.storage_target, identity.NOTIFIER) as channel:
            stored = storage_service_pb2_grpc.StorageStub(channel).GetSubscriptionRecord(
                get, metadata=[("x-automl-tenant", "default")], timeout=10
            )
        return stored.webhook_secret.startswith("v1:") and legacy not in stored.webhook_secret

    await wait_for(sealed)
    channel, stub = own_services.aio_notifier()
    async with channel:
        await publish(stub, run, 2)
        await wait_for(lambda: len(receiver.accepted()) == 2)
    verify = readme_verify()
    assert all(verify(legacy, a.headers["x-automl-signature"], a.body) for a in receiver.accepted())
