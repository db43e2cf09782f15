"""Webhook delivery: each subscription with a URL gets a dispatcher that reads
its events from the durable log in order, POSTs each as JSON signed with
HMAC-SHA256, retries failures with exponential backoff, and gives up after a
bounded number of attempts, recording every outcome on the subscription."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from dataclasses import dataclass

import httpx
from google.protobuf import json_format

from automl.v1 import event_pb2
from automl.v1 import storage_service_pb2 as pb
from services.notifier.log import StorageLog

log = logging.getLogger("automl.notifier.webhooks")
W = event_pb2.WebhookStatus
SIGNATURE_HEADER = "X-AutoML-Signature"
MAX_BACKOFF_SECONDS = 60.0


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: "sha256=" and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Policy:
    max_attempts: int
    backoff_seconds: float


class Dispatcher:
    """Delivers one subscription's events, in order, until stopped or given up."""

    def __init__(
        self, record: pb.SubscriptionRecord, log_store: StorageLog, client: httpx.AsyncClient, policy: Policy
    ) -> None:
        self.record = record
        self.log = log_store
        self.client = client
        self.policy = policy
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def subscription(self) -> event_pb2.Subscription:
        return self.record.subscription

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"webhook {self.subscription.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def matches(self, tenant: str, event: event_pb2.Event) -> bool:
        sub = self.subscription
        return (
            tenant == self.record.tenant
            and (not sub.run or event.run == sub.run)
            and (not sub.experiment or event.experiment == sub.experiment)
            and (not sub.event_types or event.type in sub.event_types)
        )

    async def _run(self) -> None:
        while True:
            try:
                await self._deliver_all()
                return  # gave up: recorded on the subscription
            except asyncio.CancelledError:
                raise
            except Exception:  # storage unreachable, say: try again shortly, from the recorded cursor
                log.exception("webhook dispatcher failed; retrying", extra={"subscription": self.subscription.name})
                await asyncio.sleep(self.policy.backoff_seconds)

    async def _deliver_all(self) -> None:
        sub = self.subscription
        cursor = sub.webhook_status.last_delivered_global_sequence
        while True:
            page = await self.log.read(
                self.record.tenant,
                run=sub.run,
                experiment=sub.experiment,
                after_global_sequence=cursor,
                event_types=list(sub.event_types),
                page_size=100,
            )
            if not page.events:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 30)  # also a safety net for missed wake-ups
                continue
            for event in page.events:
                if not await self._deliver(event):
                    return
                cursor = event.global_sequence

    async def _deliver(self, event: event_pb2.Event) -> bool:
        """POST `event` until it is accepted (True) or the attempts run out (False)."""
        body = json_format.MessageToJson(event, indent=None).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.record.webhook_secret, body),
            "X-AutoML-Event-Type": event_pb2.EventType.Name(event.type),
            "X-AutoML-Delivery": str(event.global_sequence),
        }
        delay = self.policy.backoff_seconds
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                reply = await self.client.post(self.subscription.webhook_url, content=body, headers=headers)
                error = "" if 200 <= reply.status_code < 300 else f"HTTP {reply.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if not error:
                await self._record(W.STATE_HEALTHY, event.global_sequence, 0, "")
                return True
            gave_up = attempt == self.policy.max_attempts
            await self._record(W.STATE_GAVE_UP if gave_up else W.STATE_RETRYING, None, attempt, error)
            log.warning(
                "webhook delivery failed",
                extra={"subscription": self.subscription.name, "attempt": attempt, "error": error},
            )
            if gave_up:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        return False

    async def _record(self, state: int, delivered: int | None, attempts: int, error: str) -> None:
        status = self.record.subscription.webhook_status
        status.state = state
        if delivered is not None:
            status.last_delivered_global_sequence = delivered
        status.failed_attempts = attempts
        if error:
            status.last_error = error[:500]
        status.last_attempt_time.GetCurrentTime()
        try:
            await self.log.update_record(self.record.tenant, self.record, ["subscription.webhook_status"])
        except Exception:
            log.exception("could not record webhook status")


class Webhooks:
    """Every active dispatcher; woken by the hub when matching events are stored."""

    def __init__(self, log_store: StorageLog, policy: Policy) -> None:
        self.log = log_store
        self.policy = policy
        self.client = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self.dispatchers: dict[str, Dispatcher] = {}

    async def resume_all(self) -> None:
        """Restart the dispatchers of every active webhook (after a restart)."""
        token = ""
        while True:
            page = await self.log.records("*", 1000, token, active_webhooks_only=True)
            for record in page.records:
                if record.subscription.webhook_status.state != W.STATE_GAVE_UP:
                    self.add(record)
            token = page.next_page_token
            if not token:
                return

    def add(self, record: pb.SubscriptionRecord) -> None:
        dispatcher = Dispatcher(record, self.log, self.client, self.policy)
        self.dispatchers[record.subscription.name] = dispatcher
        dispatcher.start()

    async def remove(self, name: str) -> None:
        dispatcher = self.dispatchers.pop(name, None)
        if dispatcher is not None:
            await dispatcher.stop()

    def notify(self, tenant: str, events: list[event_pb2.Event]) -> None:
        for dispatcher in self.dispatchers.values():
            if any(dispatcher.matches(tenant, e) for e in events):
                dispatcher.wake.set()

    async def close(self) -> None:
        for name in list(self.dispatchers):
            await self.remove(name)
        await self.client.aclose()
