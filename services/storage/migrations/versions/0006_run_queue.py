"""runs that queue and are taken over

- runs.queue_time: when the run last entered QUEUED (its place in its
  tenant's queue).
- runs.claim_time: when its current runner claimed it.
- runs.takeovers: how many times it was taken over after its runner was lost.
- runs.prior_search_seconds: search time used by the runners that held it
  before the current one.

All nullable (NULL reads as none / 0): runs stored before never queued, and
adding a nullable column is a metadata-only change on a large table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")


def upgrade() -> None:
    op.add_column("runs", sa.Column("queue_time", TIMESTAMP, nullable=True))
    op.add_column("runs", sa.Column("claim_time", TIMESTAMP, nullable=True))
    op.add_column("runs", sa.Column("takeovers", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("prior_search_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    for column in ("prior_search_seconds", "takeovers", "claim_time", "queue_time"):
        op.drop_column("runs", column)
