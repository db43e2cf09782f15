"""The notifier's view of the durable event log and subscription records kept
by the storage service (over gRPC, with the owning tenant on every call)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import field_mask_pb2

from automl.common import errors
from automl.common.tenants import ALL_TENANTS
from automl.v1 import event_pb2, run_pb2, storage_service_pb2_grpc
from automl.v1 import storage_service_pb2 as pb


def _as_tenant(tenant: str) -> list[tuple[str, str]]:
    return [("x-automl-tenant", tenant)]


@dataclass(frozen=True)
class Page:
    events: list[event_pb2.Event]
    has_more: bool
    first_kept: int


class StorageLog:
    """Event log and subscription records, through automl.v1.Storage."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = storage_service_pb2_grpc.StorageStub(channel)

    async def append(self, tenant: str, events: list[event_pb2.Event]) -> pb.AppendEventsResponse:
        """The events as stored, and which ones were stored before (their id was)."""
        return await self.stub.AppendEvents(pb.AppendEventsRequest(events=events), metadata=_as_tenant(tenant))

    async def last_sequence(self, tenant: str, run: str) -> int:
        reply = await self.stub.GetRun(run_pb2.GetRunRequest(name=run), metadata=_as_tenant(tenant))
        return reply.last_sequence

    async def read(
        self,
        tenant: str,
        *,
        run: str = "",
        experiment: str = "",
        after_global_sequence: int = 0,
        after_sequence: int = 0,
        event_types: list[event_pb2.EventType] | None = None,
        page_size: int = 1000,
    ) -> Page:
        reply = await self.stub.ListEvents(
            pb.ListEventsRequest(
                run=run,
                experiment=experiment,
                after_global_sequence=after_global_sequence,
                after_sequence=after_sequence,
                event_types=event_types or [],
                page_size=page_size,
            ),
            metadata=_as_tenant(tenant),
        )
        return Page(list(reply.events), reply.has_more, reply.first_kept_global_sequence)

    async def create_record(self, tenant: str, record: pb.SubscriptionRecord) -> pb.SubscriptionRecord:
        return await self.stub.CreateSubscriptionRecord(
            pb.CreateSubscriptionRecordRequest(record=record), metadata=_as_tenant(tenant)
        )

    async def record_by_name(self, tenant: str, name: str) -> pb.SubscriptionRecord:
        return await self.stub.GetSubscriptionRecord(
            pb.GetSubscriptionRecordRequest(name=name), metadata=_as_tenant(tenant)
        )

    async def record_by_token(self, token_sha256: str) -> pb.SubscriptionRecord:
        try:
            return await self.stub.GetSubscriptionRecord(
                pb.GetSubscriptionRecordRequest(token_sha256=token_sha256), metadata=_as_tenant(ALL_TENANTS)
            )
        except errors.NotFound:
            raise errors.NotFound("no subscription has this token") from None  # not storage's wording

    async def records(
        self, tenant: str, page_size: int, page_token: str, active_webhooks_only: bool = False
    ) -> pb.ListSubscriptionRecordsResponse:
        return await self.stub.ListSubscriptionRecords(
            pb.ListSubscriptionRecordsRequest(
                page_size=page_size, page_token=page_token, active_webhooks_only=active_webhooks_only
            ),
            metadata=_as_tenant(tenant),
        )

    async def update_record(
        self, tenant: str, record: pb.SubscriptionRecord, paths: list[str]
    ) -> pb.SubscriptionRecord:
        return await self.stub.UpdateSubscriptionRecord(
            pb.UpdateSubscriptionRecordRequest(record=record, update_mask=field_mask_pb2.FieldMask(paths=paths)),
            metadata=_as_tenant(tenant),
        )
