"""SQL Server review: a reserved name, tenant collation, indexes a DBA asked for

What the review of the rendered T-SQL (tests/storage/golden/mssql_migrations.sql)
found and this migration fixes:

- api_keys.prefix: PREFIX is on SQL Server's list of future reserved keywords;
  the column becomes key_prefix.
- The tenant columns compared case-insensitively under SQL Server's default
  collation (SQL_Latin1_General_CP1_CI_AS): tenants "Acme" and "acme" would
  have shared their data. On SQL Server they take a binary collation, as they
  compare on PostgreSQL and SQLite. A column's collation cannot change while an
  index, a constraint or statistics use it: those are dropped and rebuilt.
- Foreign keys without an index (SQL Server makes none for them): trained
  models by result (a deleted result cascades there; the model_result filter),
  datasets and artifacts by content (garbage collection counts a content's users).
- The gateway's supervisor counts a run's results up to its best one every
  second: an index on model_results (run_id, create_time) serves it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BINARY_COLLATION = "Latin1_General_100_BIN2"
# Every table with a tenant column, with the indexes and unique constraints
# (name, columns) that use the column.
TENANT_TABLES: dict[str, tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]] = {
    "api_keys": ([], []),
    "artifacts": ([], []),
    "datasets": ([("ix_datasets_tenant_create_time", ["tenant", "create_time"])], []),
    "events": ([("ix_events_tenant_global_sequence", ["tenant", "global_sequence"])], []),
    "experiments": (
        [("ix_experiments_tenant_create_time", ["tenant", "create_time"])],
        [("uq_experiments_tenant_id", ["tenant", "id"])],
    ),
    "model_results": ([], []),
    "runs": ([("ix_runs_tenant_create_time", ["tenant", "create_time"])], []),
    "subscriptions": ([("ix_subscriptions_tenant_create_time", ["tenant", "create_time"])], []),
    "trained_models": ([("ix_trained_models_tenant_create_time", ["tenant", "create_time"])], []),
}
NEW_INDEXES = [
    ("ix_trained_models_result_id", "trained_models", ["result_id"]),
    ("ix_datasets_content_sha256", "datasets", ["content_sha256"]),
    ("ix_artifacts_content_sha256", "artifacts", ["content_sha256"]),
    ("ix_model_results_run_id_create_time", "model_results", ["run_id", "create_time"]),
]


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column(
            "prefix", new_column_name="key_prefix", existing_type=sa.String(length=16), existing_nullable=False
        )
    for name, table, columns in NEW_INDEXES:
        op.create_index(name, table, columns, unique=False)
    if op.get_context().dialect.name == "mssql":
        _tenant_collation(BINARY_COLLATION)


def downgrade() -> None:
    if op.get_context().dialect.name == "mssql":
        _tenant_collation(None)
    for name, table, _ in reversed(NEW_INDEXES):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column(
            "key_prefix", new_column_name="prefix", existing_type=sa.String(length=16), existing_nullable=False
        )


def _tenant_collation(collation: str | None) -> None:
    """SQL Server only: give every tenant column `collation` (None: the
    database's default), around the objects that would block the change."""
    tables = ", ".join(f"N'{table}'" for table in TENANT_TABLES)
    # Statistics the server created by itself on a tenant column (an upgraded
    # database has them once queries ran) block ALTER COLUMN ... COLLATE too.
    op.execute(
        "DECLARE @drop NVARCHAR(MAX) = N'';\n"
        "SELECT @drop = @drop + N'DROP STATISTICS ' + QUOTENAME(OBJECT_NAME(s.object_id)) + N'.' "
        "+ QUOTENAME(s.name) + N';'\n"
        "FROM sys.stats AS s\n"
        "JOIN sys.stats_columns AS sc ON sc.object_id = s.object_id AND sc.stats_id = s.stats_id\n"
        "JOIN sys.columns AS c ON c.object_id = sc.object_id AND c.column_id = sc.column_id\n"
        f"WHERE s.auto_created = 1 AND c.name = N'tenant' AND OBJECT_NAME(s.object_id) IN ({tables});\n"
        "EXEC sp_executesql @drop"
    )
    for table, (indexes, uniques) in TENANT_TABLES.items():
        for name, _ in uniques:
            op.drop_constraint(name, table, type_="unique")
        for name, _ in indexes:
            op.drop_index(name, table_name=table)
        op.alter_column(
            table,
            "tenant",
            type_=mssql.VARCHAR(64, collation=collation),
            existing_type=sa.String(length=64),
            existing_nullable=False,
            nullable=False,
        )
        for name, columns in indexes:
            op.create_index(name, table, columns, unique=False)
        for name, columns in uniques:
            op.create_unique_constraint(name, table, columns)
