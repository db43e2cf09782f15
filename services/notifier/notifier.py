"""The notifier's parts and their lifetime: a channel to storage, the hub,
webhook dispatchers (resumed from storage at start) and the subscription
registry. server.py builds the process around it."""

from __future__ import annotations

import asyncio
import gc
import logging

import grpc

from automl.common import errors, identity, status
from automl.common.channels import connect
from automl.common.settings import Settings
from services.notifier.hub import Hub
from services.notifier.log import StorageLog
from services.notifier.sealing import SecretBox
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
            except errors.AutoMLError as exc:
                log.warning("cannot resume webhooks yet, retrying", extra={"error": status.code_of(exc).name})
                await asyncio.sleep(2)

    async def stop(self) -> None:
        self.resuming.cancel()
        await self.hub.stop()
        await self.webhooks.close()
        if self.channel is not None:
            await self.channel.close()
