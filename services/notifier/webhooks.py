"""Webhook delivery: each subscription with a URL gets a dispatcher that reads
its events from the durable log in order, POSTs each as JSON signed with
HMAC-SHA256 over a timestamp and the body, retries failures with exponential
backoff, and gives up after a bounded number of attempts, recording every
outcome on the subscription.

Each attempt resolves the URL's host once, checks every address (targets.py)
and connects to the checked one. What the tenant reads back is a coarse class
of failure (ERROR_CLASSES, or "HTTP <status>"); the detail goes to the
server's log only: exception text (which port is closed, which host exists)
would turn webhooks into a scanner of the suite's network.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from google.protobuf import json_format

from automl.common.tenants import ALL_TENANTS
from automl.v1 import event_pb2
from automl.v1 import storage_service_pb2 as pb
from services.notifier.log import StorageLog
from services.notifier.sealing import SecretBox, Unreadable
from services.notifier.targets import BadURL, Guard, LookupFailed, TargetRefused

log = logging.getLogger("automl.notifier.webhooks")
W = event_pb2.WebhookStatus
SIGNATURE_HEADER = "X-AutoML-Signature"
# How old a signature receivers should accept (docs/events.md): a captured delivery
# replays for this long at most. Each attempt is signed anew, so a retry after
# a long backoff is still fresh.
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_BACKOFF_SECONDS = 60.0
TIMEOUT_SECONDS = 10.0  # connect, write, and wait for the answer, each
DEADLINE_SECONDS = 30.0  # one attempt in all: a receiver that drips bytes does not hold its webhook longer

# What a tenant reads in webhook_status.last_error, besides "HTTP <status>".
TIMEOUT = "timeout"
REFUSED = "connection refused"
CONNECTION = "connection failed"
TLS = "TLS error"
DNS = "DNS error"
ADDRESS = "address refused"
INVALID_URL = "invalid URL"
SECRET = "secret unreadable"
ERROR_CLASSES = (TIMEOUT, REFUSED, CONNECTION, TLS, DNS, ADDRESS, INVALID_URL, SECRET)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value: "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>'>"
    (Stripe's scheme): the timestamp is signed too, so a replay is recognisably old."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass(frozen=True)
class Outcome:
    error: str  # "" when the receiver accepted; else what the tenant reads
    detail: str = ""  # for the server's log only


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it was raised from, exception groups included."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [c for c in (current.__cause__, current.__context__) if c is not None]
        if isinstance(current, BaseExceptionGroup):
            todo += list(current.exceptions)


def classify(exc: BaseException) -> str:
    """The coarse class of a failed attempt."""
    for cause in _causes(exc):
        if isinstance(cause, httpx.TimeoutException | TimeoutError):
            return TIMEOUT
        if isinstance(cause, ssl.SSLError):
            return TLS
        if isinstance(cause, ConnectionRefusedError):
            return REFUSED
        if isinstance(cause, socket.gaierror):
            return DNS
    return CONNECTION


async def post(client: httpx.AsyncClient, guard: Guard, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """One delivery attempt: check the target, then POST to the checked address."""
    try:
        target = await guard.check(url)
    except TargetRefused as exc:
        return Outcome(ADDRESS, str(exc))
    except LookupFailed as exc:
        return Outcome(DNS, str(exc))
    except BadURL as exc:  # stored before URLs were checked this closely
        return Outcome(INVALID_URL, str(exc))
    try:
        async with (
            asyncio.timeout(DEADLINE_SECONDS),
            client.stream(
                "POST",
                target.pinned_url,
                content=body,
                headers={**headers, "Host": target.host_header},
                # TLS: the URL's host name for SNI and the certificate check, not the address.
                extensions={"sni_hostname": target.host},
            ) as reply,
        ):
            status = reply.status_code  # the body is never read: a receiver cannot make us hold it
    except (httpx.HTTPError, httpx.InvalidURL, OSError, TimeoutError) as exc:
        return Outcome(classify(exc), f"{target.address}: {type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Outcome("")
    return Outcome(f"HTTP {status}", f"{target.address}: HTTP {status}")


@dataclass
class Policy:
    max_attempts: int
    backoff_seconds: float


class Dispatcher:
    """Delivers one subscription's events, in order, until stopped or given up."""

    def __init__(
        self,
        record: pb.SubscriptionRecord,
        log_store: StorageLog,
        client: httpx.AsyncClient,
        policy: Policy,
        guard: Guard,
        box: SecretBox,
    ) -> None:
        self.record = record
        self.log = log_store
        # Its own client, so its own connection pool: pooled connections are
        # keyed by the pinned address, and one made with another webhook's
        # host name (SNI, certificate) must never carry this one's events.
        self.client = client
        self.policy = policy
        self.guard = guard
        self.box = box
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
        await self.client.aclose()

    def matches(self, tenant: str, event: event_pb2.Event) -> bool:
        sub = self.subscription
        return (
            tenant == self.record.tenant
            and (not sub.run or event.run == sub.run)
            and (not sub.experiment or event.experiment == sub.experiment)
            and (not sub.event_types or event.type in sub.event_types)
        )

    async def _run(self) -> None:
        try:
            secret = self.box.open(self.record.webhook_secret)
        except Unreadable:
            log.error(
                "webhook secret unreadable: AUTOML_WEBHOOK_SECRET_KEY (or the key file) changed; "
                "the subscription must be created again",
                extra={"subscription": self.subscription.name},
            )
            await self._record(W.STATE_GAVE_UP, None, self.subscription.webhook_status.failed_attempts, SECRET)
            return
        while True:
            try:
                await self._deliver_all(secret)
                return  # gave up: recorded on the subscription
            except asyncio.CancelledError:
                raise
            except Exception:  # storage unreachable, say: try again shortly, from the recorded cursor
                log.exception("webhook dispatcher failed; retrying", extra={"subscription": self.subscription.name})
                await asyncio.sleep(self.policy.backoff_seconds)

    async def _deliver_all(self, secret: str) -> None:
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
                if not await self._deliver(event, secret):
                    return
                cursor = event.global_sequence

    async def _deliver(self, event: event_pb2.Event, secret: str) -> bool:
        """POST `event` until it is accepted (True) or the attempts run out (False)."""
        body = json_format.MessageToJson(event, indent=None).encode()
        headers = {
            "Content-Type": "application/json",
            "X-AutoML-Event-Type": event_pb2.EventType.Name(event.type),
            "X-AutoML-Delivery": str(event.global_sequence),
        }
        delay = self.policy.backoff_seconds
        for attempt in range(1, self.policy.max_attempts + 1):
            headers[SIGNATURE_HEADER] = sign(secret, body, int(time.time()))
            outcome = await post(self.client, self.guard, self.subscription.webhook_url, body, headers)
            if not outcome.error:
                await self._record(W.STATE_HEALTHY, event.global_sequence, 0, "")
                return True
            gave_up = attempt == self.policy.max_attempts
            await self._record(W.STATE_GAVE_UP if gave_up else W.STATE_RETRYING, None, attempt, outcome.error)
            log.warning(
                "webhook delivery failed",
                extra={
                    "subscription": self.subscription.name,
                    "tenant": self.record.tenant,
                    "attempt": attempt,
                    "error": outcome.error,
                    "detail": outcome.detail,
                },
            )
            if gave_up:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        return False

    async def _record(
        self, state: event_pb2.WebhookStatus.State, delivered: int | None, attempts: int, error: str
    ) -> None:
        status = self.record.subscription.webhook_status
        status.state = state
        if delivered is not None:
            status.last_delivered_global_sequence = delivered
        status.failed_attempts = attempts
        if error:
            status.last_error = error
        status.last_attempt_time.GetCurrentTime()
        try:
            await self.log.update_record(self.record.tenant, self.record, ["subscription.webhook_status"])
        except Exception:
            log.exception("could not record webhook status")


class Webhooks:
    """Every active dispatcher; woken by the hub when matching events are stored."""

    def __init__(
        self,
        log_store: StorageLog,
        policy: Policy,
        guard: Guard,
        box: SecretBox,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.log = log_store
        self.policy = policy
        self.guard = guard
        self.box = box
        # One TLS context for every client (loading the CA bundle is the costly part).
        self.ssl_context = ssl_context or httpx.create_ssl_context()
        self.dispatchers: dict[str, Dispatcher] = {}

    def _client(self) -> httpx.AsyncClient:
        # trust_env=False: an HTTP(S)_PROXY in the environment would make the
        # proxy, not the checked address, the place we connect to.
        return httpx.AsyncClient(
            timeout=TIMEOUT_SECONDS, follow_redirects=False, trust_env=False, verify=self.ssl_context
        )

    async def resume_all(self) -> None:
        """Restart the dispatchers of every active webhook (after a restart)."""
        token = ""
        while True:
            page = await self.log.records(ALL_TENANTS, 1000, token, active_webhooks_only=True)
            for record in page.records:
                await self._seal(record)
                if record.subscription.webhook_status.state != W.STATE_GAVE_UP:
                    self.add(record)
            token = page.next_page_token
            if not token:
                return

    async def _seal(self, record: pb.SubscriptionRecord) -> None:
        """Encrypt a secret stored in clear before sealing existed."""
        if not record.webhook_secret or self.box.is_sealed(record.webhook_secret):
            return
        sealed = pb.SubscriptionRecord()
        sealed.CopyFrom(record)
        sealed.webhook_secret = self.box.seal(record.webhook_secret)
        try:
            await self.log.update_record(record.tenant, sealed, ["webhook_secret"])
        except Exception:  # an older storage: the secret stays as it was, and still works
            log.exception("could not seal a webhook secret", extra={"subscription": record.subscription.name})
            return
        record.webhook_secret = sealed.webhook_secret

    def add(self, record: pb.SubscriptionRecord) -> None:
        dispatcher = Dispatcher(record, self.log, self._client(), self.policy, self.guard, self.box)
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
