"""search records: stopped candidates, run notes, how each candidate was searched

What the runner's stronger search records beside its results:

- runs.models_stopped: candidates interrupted by a normal stop of the run
  (outcome OUTCOME_INTERRUPTED), counted apart from models_failed. NOT NULL;
  existing runs get 0 through a default that lives only while the column is
  added (the models set every default in Python): on SQL Server a named
  constraint dropped right after, on PostgreSQL dropped after; SQLite cannot
  drop a column default without rebuilding the table, whose rows cascade to
  results and events, so the (harmless) default stays there.
- runs.notes: what the runner adapted to the data or fell back on, a JSON
  list of lines (NULL: none).
- model_results.sample_rows, job_type, ensemble_members (JSON): rows the
  candidate was cross-validated on, how it was proposed, an ensemble's
  members and weights. Nullable: results stored before have none, and adding
  a nullable column is a metadata-only change on a large table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON_TEXT = sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql")
RESULT_COLUMNS = (
    ("sample_rows", sa.Integer()),
    ("job_type", sa.String(length=64)),
    ("ensemble_members", JSON_TEXT),
)


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "mssql":
        # Named, so that it can be dropped by name (an unnamed one gets a random name).
        op.execute("ALTER TABLE runs ADD models_stopped INTEGER NOT NULL CONSTRAINT df_runs_models_stopped DEFAULT 0")
        op.execute("ALTER TABLE runs DROP CONSTRAINT df_runs_models_stopped")
    else:
        op.add_column("runs", sa.Column("models_stopped", sa.Integer(), nullable=False, server_default=sa.text("0")))
        if dialect != "sqlite":
            op.alter_column(
                "runs", "models_stopped", server_default=None, existing_type=sa.Integer(), existing_nullable=False
            )
    op.add_column("runs", sa.Column("notes", JSON_TEXT, nullable=True))
    for name, type_ in RESULT_COLUMNS:
        op.add_column("model_results", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # SQLite drops columns with ALTER TABLE ... DROP COLUMN (3.35+), without rebuilding the table.
    for name, _ in reversed(RESULT_COLUMNS):
        op.drop_column("model_results", name)
    op.drop_column("runs", "notes")
    op.drop_column("runs", "models_stopped")
