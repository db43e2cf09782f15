"""Subscriptions: opaque tokens bound to a filter and an owner, optionally a
webhook. The token and the webhook secret are shown once, at creation; the
server keeps the token's hash, and the secret (which signing needs)
encrypted. A webhook's URL is checked at creation as at each delivery: a
target on a loopback, private, link-local... address is refused (targets.py)."""

from __future__ import annotations

import hashlib
import secrets

import grpc

from automl.common import errors
from automl.common.errors import InvalidArgument
from automl.v1 import event_pb2
from automl.v1 import storage_service_pb2 as pb
from services.notifier.hub import Filter, Hub
from services.notifier.log import StorageLog
from services.notifier.sealing import SecretBox
from services.notifier.targets import BadURL, Guard, LookupFailed, TargetRefused
from services.notifier.webhooks import Webhooks

S = event_pb2.Subscription


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Subscriptions:
    def __init__(self, log_store: StorageLog, hub: Hub, webhooks: Webhooks, guard: Guard, box: SecretBox) -> None:
        self.log = log_store
        self.hub = hub
        self.webhooks = webhooks
        self.guard = guard
        self.box = box

    async def create(self, tenant: str, sub: event_pb2.Subscription) -> event_pb2.CreateSubscriptionResponse:
        if sub.run and sub.experiment:
            raise InvalidArgument.field("subscription.experiment", "set run or experiment (or neither), not both")
        if event_pb2.EVENT_TYPE_UNSPECIFIED in sub.event_types:
            raise InvalidArgument.field("subscription.event_types", "EVENT_TYPE_UNSPECIFIED is not an event type")
        secret = ""
        if sub.webhook_url:
            await self._check_target(sub.webhook_url)
            secret = secrets.token_urlsafe(32)
        token = "sub_" + secrets.token_urlsafe(32)
        record = pb.SubscriptionRecord(
            subscription=event_pb2.Subscription(
                run=sub.run,
                experiment=sub.experiment,
                event_types=sub.event_types,
                webhook_url=sub.webhook_url,
                state=S.STATE_ACTIVE,
            ),
            token_sha256=token_hash(token),
            webhook_secret=self.box.seal(secret) if secret else "",
        )
        if sub.webhook_url:
            # A new webhook starts with what happens from now on, not the history.
            record.subscription.webhook_status.CopyFrom(
                event_pb2.WebhookStatus(state=event_pb2.WebhookStatus.STATE_HEALTHY)
            )
            record.subscription.webhook_status.last_delivered_global_sequence = await self._latest(tenant, sub)
        stored = await self.log.create_record(tenant, record)
        if sub.webhook_url:
            self.webhooks.add(stored)
        return event_pb2.CreateSubscriptionResponse(
            subscription=stored.subscription, token=token, webhook_secret=secret
        )

    async def _check_target(self, url: str) -> None:
        """INVALID_ARGUMENT, saying what to do, for a URL webhooks may not go to."""
        field = "subscription.webhook_url"
        try:
            await self.guard.check(url)
        except BadURL as exc:
            raise InvalidArgument.field(field, str(exc)) from None
        except TargetRefused as exc:
            if exc.own:
                raise InvalidArgument.field(field, f"{exc}: a webhook cannot call the suite itself") from None
            raise InvalidArgument.field(
                field,
                f"{exc}: webhooks go to public addresses only (an operator can admit an on-premises network "
                "with AUTOML_WEBHOOK_ALLOW_NETWORKS)",
            ) from None
        except LookupFailed as exc:
            if exc.temporary:
                raise errors.Unavailable(f"cannot resolve the webhook's host now ({exc}): try again") from None
            raise InvalidArgument.field(field, f"{exc}: the host does not resolve, check the URL") from None

    async def _latest(self, tenant: str, sub: event_pb2.Subscription) -> int:
        """The newest global sequence of the subscription's scope (0 if none)."""
        latest = 0
        cursor = 0
        while True:
            chunk = await self.log.read(
                tenant, run=sub.run, experiment=sub.experiment, after_global_sequence=cursor, page_size=10_000
            )
            if chunk.events:
                latest = cursor = chunk.events[-1].global_sequence
            if not chunk.has_more:
                return latest

    async def get(self, tenant: str, name: str) -> event_pb2.Subscription:
        return (await self.log.record_by_name(tenant, name)).subscription

    async def list(self, tenant: str, page_size: int, page_token: str) -> event_pb2.ListSubscriptionsResponse:
        page = await self.log.records(tenant, page_size, page_token)
        return event_pb2.ListSubscriptionsResponse(
            subscriptions=[r.subscription for r in page.records], next_page_token=page.next_page_token
        )

    async def revoke(self, tenant: str, name: str) -> None:
        record = await self.log.record_by_name(tenant, name)
        record.subscription.state = S.STATE_REVOKED
        await self.log.update_record(tenant, record, ["subscription.state"])
        await self.webhooks.remove(name)
        self.hub.close_matching(
            lambda s: s.tag == name,
            errors.Unauthenticated("this subscription was revoked"),
        )

    async def resolve(self, token: str, tenant: str) -> tuple[pb.SubscriptionRecord, Filter]:
        """The subscription of `token`: NOT_FOUND if unknown or another tenant's
        (a leaked token does not cross tenants), UNAUTHENTICATED if revoked."""
        if not token:
            raise InvalidArgument.field("token", "required: the token CreateSubscription returned")
        try:
            record = await self.log.record_by_token(token_hash(token))
        except grpc.aio.AioRpcError as exc:
            raise errors.Unavailable(f"cannot check the token: {exc.details()}") from exc
        if record.tenant != tenant:
            raise errors.NotFound("no subscription has this token")
        if record.subscription.state != S.STATE_ACTIVE:
            raise errors.Unauthenticated("this subscription was revoked: create a new one")
        sub = record.subscription
        return record, Filter(record.tenant, sub.run, sub.experiment, frozenset(sub.event_types))
