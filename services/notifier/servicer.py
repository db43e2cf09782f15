"""gRPC face of the notifier: translates requests to the hub and the
subscription registry, and their answers back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2

from automl.common import context
from automl.common.errors import InvalidArgument
from automl.common.settings import Settings
from automl.common.tenants import DEFAULT_TENANT
from automl.v1 import common_pb2, event_pb2, notifier_service_pb2_grpc
from automl.v1 import notifier_service_pb2 as pb
from services.notifier.hub import Batch, Filter, Hub, Position
from services.notifier.subscriptions import Subscriptions

if TYPE_CHECKING:
    from services.notifier.notifier import Notifier


def tenant() -> str:
    return context.tenant.get() or DEFAULT_TENANT


class NotifierServicer(notifier_service_pb2_grpc.NotifierServicer):
    """automl.v1.Notifier."""

    def __init__(self, notifier: Notifier, settings: Settings) -> None:
        self.notifier = notifier
        self.settings = settings

    @property
    def hub(self) -> Hub:
        return self.notifier.hub

    @property
    def subscriptions(self) -> Subscriptions:
        return self.notifier.subscriptions

    async def Publish(
        self, request: pb.PublishRequest, ctx: grpc.aio.ServicerContext[pb.PublishRequest, pb.PublishResponse]
    ) -> pb.PublishResponse:
        return pb.PublishResponse(events=await self.hub.publish(tenant(), list(request.events)))

    async def StreamEvents(
        self,
        request: pb.StreamEventsRequest,
        ctx: grpc.aio.ServicerContext[pb.StreamEventsRequest, pb.StreamEventsResponse],
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        if request.run and request.experiment:
            raise InvalidArgument.field("experiment", "set run or experiment (or neither), not both")
        if request.end_with_run and not request.run:
            raise InvalidArgument.field("end_with_run", "needs run: only a run's stream ends with the run")
        if request.WhichOneof("after") == "after_sequence" and not request.run:
            raise InvalidArgument.field("after_sequence", "needs run: sequences count one run's events")
        flt = Filter(tenant(), request.run, request.experiment, frozenset(request.event_types))
        after = None
        if request.WhichOneof("after") == "after_sequence":
            after = Position(sequence=request.after_sequence)
        elif request.WhichOneof("after") == "after_global_sequence":
            after = Position(global_sequence=request.after_global_sequence)
        async for item in self.hub.stream(flt, after, end_with_run=request.end_with_run):
            if isinstance(item, common_pb2.Heartbeat):
                yield pb.StreamEventsResponse(heartbeat=item)
            else:
                yield _message(pb.StreamEventsResponse, item)

    async def CreateSubscription(
        self,
        request: event_pb2.CreateSubscriptionRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.CreateSubscriptionRequest, event_pb2.CreateSubscriptionResponse],
    ) -> event_pb2.CreateSubscriptionResponse:
        return await self.subscriptions.create(tenant(), request.subscription)

    async def GetSubscription(
        self,
        request: event_pb2.GetSubscriptionRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.GetSubscriptionRequest, event_pb2.Subscription],
    ) -> event_pb2.Subscription:
        return await self.subscriptions.get(tenant(), request.name)

    async def ListSubscriptions(
        self,
        request: event_pb2.ListSubscriptionsRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.ListSubscriptionsRequest, event_pb2.ListSubscriptionsResponse],
    ) -> event_pb2.ListSubscriptionsResponse:
        return await self.subscriptions.list(tenant(), request.page_size, request.page_token)

    async def DeleteSubscription(
        self,
        request: event_pb2.DeleteSubscriptionRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.DeleteSubscriptionRequest, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        await self.subscriptions.revoke(tenant(), request.name)
        return empty_pb2.Empty()

    async def Subscribe(
        self,
        request: event_pb2.SubscribeRequest,
        ctx: grpc.aio.ServicerContext[event_pb2.SubscribeRequest, event_pb2.SubscribeResponse],
    ) -> AsyncIterator[event_pb2.SubscribeResponse]:
        record, flt = await self.subscriptions.resolve(request.token, tenant())
        after = (
            Position(global_sequence=request.after_global_sequence)
            if request.HasField("after_global_sequence")
            else None
        )
        async for item in self.hub.stream(flt, after, tag=record.subscription.name):
            if isinstance(item, common_pb2.Heartbeat):
                yield event_pb2.SubscribeResponse(heartbeat=item)
            else:
                yield _message(event_pb2.SubscribeResponse, item)


def _message(kind: type, batch: Batch) -> Any:
    """The stream message of `batch`, built once for all the streams that send it."""
    message = batch.messages.get(kind)
    if message is None:
        message = batch.messages[kind] = kind(batch=event_pb2.EventBatch(events=batch.events))
    return message
