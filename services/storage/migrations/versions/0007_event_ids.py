"""event_ids: each event stored once per id its publisher chose

- events.event_id: automl.v1.Event.id, the idempotency key of Publish; a
  Publish retried after a lost answer finds its events stored and gets them
  back instead of storing them twice.
- uq_events_tenant_event_id: unique (tenant, event_id), also the lookup of
  the ids of an append.

Nullable (events stored before have none, and adding a nullable column is a
metadata-only change on the largest table); the unique index leaves NULLs
out, which SQL Server must be told (a filtered index: its unique indexes
count NULLs as equal), PostgreSQL and SQLite do anyway.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "events",
        sa.Column(
            "event_id",
            sa.String(length=64).with_variant(mssql.VARCHAR(length=64, collation="Latin1_General_100_BIN2"), "mssql"),
            nullable=True,
        ),
    )
    op.create_index(
        "uq_events_tenant_event_id",
        "events",
        ["tenant", "event_id"],
        unique=True,
        mssql_where=sa.text("event_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_events_tenant_event_id", table_name="events")
    op.drop_column("events", "event_id")
