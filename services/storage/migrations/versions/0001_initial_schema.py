"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.Unicode(length=256), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.Column("revoke_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_api_keys_key_sha256")),
    )
    op.create_table(
        "contents",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("inline_data", sa.LargeBinary().with_variant(mssql.VARBINARY(length="max"), "mssql"), nullable=True),
        sa.Column("blob_key", sa.String(length=256), nullable=True),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_contents")),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("experiment_id", sa.String(length=63), nullable=False),
        sa.Column("event_types", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("webhook_url", sa.Unicode(length=2048), nullable=False),
        sa.Column("webhook_secret", sa.String(length=128), nullable=False),
        sa.Column("webhook_status", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=True),
        sa.Column("subscription_state", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_subscriptions_token_sha256")),
    )
    op.create_index(
        op.f("ix_subscriptions_tenant_create_time"), "subscriptions", ["tenant", "create_time"], unique=False
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.ForeignKeyConstraint(
            ["content_sha256"], ["contents.sha256"], name=op.f("fk_artifacts_content_sha256_contents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.Unicode(length=256), nullable=False),
        sa.Column("description", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("csv_options", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("column_profiles", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.ForeignKeyConstraint(
            ["content_sha256"], ["contents.sha256"], name=op.f("fk_datasets_content_sha256_contents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    op.create_index(op.f("ix_datasets_tenant_create_time"), "datasets", ["tenant", "create_time"], unique=False)
    op.create_table(
        "experiments",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("display_name", sa.Unicode(length=256), nullable=False),
        sa.Column("description", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("target_column", sa.Unicode(length=1024), nullable=False),
        sa.Column("task", sa.Integer(), nullable=False),
        sa.Column("resolved_task", sa.Integer(), nullable=False),
        sa.Column("primary_metric", sa.Integer(), nullable=False),
        sa.Column("cv_folds", sa.Integer(), nullable=False),
        sa.Column("holdout_fraction", sa.Float(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column(
            "allowed_model_families", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False
        ),
        sa.Column(
            "excluded_columns", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False
        ),
        sa.Column(
            "default_stop_conditions", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False
        ),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.Column("update_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_experiments_dataset_id_datasets")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_experiments")),
        sa.UniqueConstraint("tenant", "id", name=op.f("uq_experiments_tenant_id")),
    )
    op.create_index(op.f("ix_experiments_dataset_id"), "experiments", ["dataset_id"], unique=False)
    op.create_index(op.f("ix_experiments_tenant_create_time"), "experiments", ["tenant", "create_time"], unique=False)
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("experiment_pk", sa.Integer(), nullable=False),
        sa.Column("run_state", sa.Integer(), nullable=False),
        sa.Column("stop_reason", sa.Integer(), nullable=False),
        sa.Column("status_message", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("stop_conditions", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("parallel_workers", sa.Integer(), nullable=False),
        sa.Column("primary_metric", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.Column("start_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True),
        sa.Column("end_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True),
        sa.Column("heartbeat_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=True),
        sa.Column("runner_id", sa.String(length=128), nullable=False),
        sa.Column("models_evaluated", sa.Integer(), nullable=False),
        sa.Column("models_failed", sa.Integer(), nullable=False),
        sa.Column("best_result_id", sa.String(length=40), nullable=True),
        sa.Column("best_score", sa.Float(), nullable=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_pk"], ["experiments.pk"], name=op.f("fk_runs_experiment_pk_experiments"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_experiment_pk_create_time"), "runs", ["experiment_pk", "create_time"], unique=False)
    op.create_index(op.f("ix_runs_run_state"), "runs", ["run_state"], unique=False)
    op.create_index(op.f("ix_runs_tenant_create_time"), "runs", ["tenant", "create_time"], unique=False)
    op.create_table(
        "events",
        sa.Column("global_sequence", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("experiment_pk", sa.Integer(), nullable=False),
        sa.Column("run_sequence", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary().with_variant(mssql.VARBINARY(length="max"), "mssql"), nullable=False),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_events_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("global_sequence", name=op.f("pk_events")),
        sa.UniqueConstraint("run_id", "run_sequence", name=op.f("uq_events_run_id_run_sequence")),
    )
    op.create_index(
        op.f("ix_events_experiment_pk_global_sequence"), "events", ["experiment_pk", "global_sequence"], unique=False
    )
    op.create_index(op.f("ix_events_tenant_global_sequence"), "events", ["tenant", "global_sequence"], unique=False)
    op.create_table(
        "model_results",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("eval_order", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("model_family", sa.String(length=128), nullable=False),
        sa.Column("pipeline_steps", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("model_json", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("folds", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("primary_score", sa.Float(), nullable=True),
        sa.Column("folds_run", sa.Integer(), nullable=False),
        sa.Column("fit_time_seconds", sa.Float(), nullable=False),
        sa.Column("score_time_seconds", sa.Float(), nullable=False),
        sa.Column("was_new_best", sa.Boolean(), nullable=False),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_model_results_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_results")),
        sa.UniqueConstraint("run_id", "eval_order", name=op.f("uq_model_results_run_id_eval_order")),
    )
    op.create_table(
        "model_result_metrics",
        sa.Column("result_id", sa.String(length=40), nullable=False),
        sa.Column("metric", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("std", sa.Float(), nullable=False),
        sa.Column("train_mean", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["model_results.id"],
            name=op.f("fk_model_result_metrics_result_id_model_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("result_id", "metric", name=op.f("pk_model_result_metrics")),
    )
    op.create_index(
        op.f("ix_model_result_metrics_run_id_metric_mean"),
        "model_result_metrics",
        ["run_id", "metric", "mean"],
        unique=False,
    )
    op.create_table(
        "trained_models",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("result_id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("experiment_pk", sa.Integer(), nullable=False),
        sa.Column("model_state", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("task", sa.Integer(), nullable=False),
        sa.Column("feature_columns", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("classes", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=False),
        sa.Column("training_rows", sa.BigInteger(), nullable=False),
        sa.Column("fit_time_seconds", sa.Float(), nullable=False),
        sa.Column("artifact_id", sa.String(length=40), nullable=True),
        sa.Column(
            "holdout_evaluation", sa.UnicodeText().with_variant(sa.NVARCHAR(length="max"), "mssql"), nullable=True
        ),
        sa.Column("create_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.Column("update_time", sa.DateTime().with_variant(mssql.DATETIME2(), "mssql"), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["model_results.id"],
            name=op.f("fk_trained_models_result_id_model_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trained_models")),
    )
    op.create_index(op.f("ix_trained_models_run_id"), "trained_models", ["run_id"], unique=False)
    op.create_index(
        op.f("ix_trained_models_tenant_create_time"), "trained_models", ["tenant", "create_time"], unique=False
    )


def downgrade() -> None:

    op.drop_index(op.f("ix_trained_models_tenant_create_time"), table_name="trained_models")
    op.drop_index(op.f("ix_trained_models_run_id"), table_name="trained_models")
    op.drop_table("trained_models")
    op.drop_index(op.f("ix_model_result_metrics_run_id_metric_mean"), table_name="model_result_metrics")
    op.drop_table("model_result_metrics")
    op.drop_table("model_results")
    op.drop_index(op.f("ix_events_tenant_global_sequence"), table_name="events")
    op.drop_index(op.f("ix_events_experiment_pk_global_sequence"), table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_runs_tenant_create_time"), table_name="runs")
    op.drop_index(op.f("ix_runs_run_state"), table_name="runs")
    op.drop_index(op.f("ix_runs_experiment_pk_create_time"), table_name="runs")
    op.drop_table("runs")
    op.drop_index(op.f("ix_experiments_tenant_create_time"), table_name="experiments")
    op.drop_index(op.f("ix_experiments_dataset_id"), table_name="experiments")
    op.drop_table("experiments")
    op.drop_index(op.f("ix_datasets_tenant_create_time"), table_name="datasets")
    op.drop_table("datasets")
    op.drop_table("artifacts")
    op.drop_index(op.f("ix_subscriptions_tenant_create_time"), table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("contents")
    op.drop_table("api_keys")
