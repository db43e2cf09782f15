"""How the notifier process is put together: a channel to storage, the hub,
webhook dispatchers (resumed from storage at start), the servicer."""

from __future__ import annotations

import asyncio
import gc
import logging

import grpc

from automl.common import identity
from automl.common.channels import connect
from automl.common.server import ServiceDefinition, lifespan
from automl.common.settings import Settings
from automl.v1 import notifier_service_pb2, notifier_service_pb2_grpc
from services.notifier.hub import Hub
from services.notifier.log import StorageLog
from services.notifier.sealing import SecretBox
from services.notifier.servicer import NotifierServicer
from services.notifier.subscriptions import Subscriptions
from services.notifier.targets import Guard
from services.notifier.webhooks import Policy, Webhooks

log = logging.getLogger("automl.notifier")


class Notifier:
    """The notifier's parts. Built in start(), inside the server's event loop
    (channels, queues and tasks belong to it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.channel: grpc.aio.Channel | None = None
        self.resuming: asyncio.Task[None]
        self.hub: Hub
        self.webhooks: Webhooks
        self.subscriptions: Subscriptions

    async def start(self) -> None:
        credentials = identity.Credentials.of(self.settings, identity.NOTIFIER)
        self.channel = connect(self.settings.storage_address, self.settings, credentials)
        log_store = StorageLog(self.channel)
        self.hub = Hub(
            log_store,
            self.settings.subscriber_queue,
            self.settings.heartbeat_seconds,
            self.settings.stream_messages_per_second,
        )
        guard = Guard.from_settings(self.settings)
        box = SecretBox.from_settings(self.settings)
        self.webhooks = Webhooks(
            log_store, Policy(self.settings.webhook_max_attempts, self.settings.webhook_backoff_seconds), guard, box
        )
        self.subscriptions = Subscriptions(log_store, self.hub, self.webhooks, guard, box)
        self.hub.listeners.append(self.webhooks.notify)
        await self.hub.start()
        self.resuming = asyncio.create_task(self._resume_webhooks(), name="resume webhooks")
        # What is loaded by now lives as long as the process: keep it out of
        # the collector's full passes, which otherwise stopped every stream for
        # 23-41 ms each, several times a minute, with 1,000 subscribers.
        gc.freeze()

    async def _resume_webhooks(self) -> None:
        """Restart webhook deliveries; storage may still be starting: retry."""
        while True:
            try:
                await self.webhooks.resume_all()
                return
            except grpc.aio.AioRpcError as exc:
                log.warning("cannot resume webhooks yet, retrying", extra={"error": exc.code().name})
                await asyncio.sleep(2)

    async def stop(self) -> None:
        self.resuming.cancel()
        await self.hub.stop()
        await self.webhooks.close()
        if self.channel is not None:
            await self.channel.close()


def build(settings: Settings) -> ServiceDefinition:
    notifier = Notifier(settings)
    servicer = NotifierServicer(notifier, settings)
    return ServiceDefinition(
        name="notifier",
        descriptors=(notifier_service_pb2.DESCRIPTOR.services_by_name["Notifier"],),
        port=settings.notifier_port,
        register=lambda server: notifier_service_pb2_grpc.add_NotifierServicer_to_server(servicer, server),
        lifespan=lifespan(notifier),
    )
