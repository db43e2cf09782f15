"""refit on every row, out-of-fold predictions kept

- trained_models.includes_holdout: the model was fitted with the holdout rows
  (TrainModelRequest.include_holdout), so it has no holdout to be tested on.
- model_results.predictions_artifact_id: the artifact holding a result's
  out-of-fold predictions, from which an ensemble can be built again.

Both nullable (NULL reads as false / none): rows stored before have none, and
adding a nullable column is a metadata-only change on a large table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("trained_models", sa.Column("includes_holdout", sa.Boolean(), nullable=True))
    op.add_column("model_results", sa.Column("predictions_artifact_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("model_results", "predictions_artifact_id")
    op.drop_column("trained_models", "includes_holdout")
