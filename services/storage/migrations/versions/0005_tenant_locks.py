"""tenant_locks: one row per tenant, locked by the per-tenant quota checks

Creating a dataset or a run locks its tenant's row (an UPDATE) before it
counts what the tenant has (datasets, stored bytes, active runs): two
concurrent creations then run one after the other, and the second counts the
first, on every backend (SQLite takes its write lock, PostgreSQL and SQL
Server the row's). A row is made the first time a tenant needs one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_locks",
        sa.Column(
            "tenant",
            sa.String(length=64).with_variant(mssql.VARCHAR(length=64, collation="Latin1_General_100_BIN2"), "mssql"),
            nullable=False,
        ),
        sa.Column("lock_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_locks")),
    )


def downgrade() -> None:
    op.drop_table("tenant_locks")
