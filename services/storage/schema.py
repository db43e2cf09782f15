"""The metadata schema (SQLAlchemy 2, typed ORM).

Portable on SQLite, PostgreSQL and SQL Server: no server defaults, no
dialect functions; every default is set by Python. Types with a SQL Server
variant say so (DATETIME2, NVARCHAR via Unicode, VARBINARY(MAX) via
LargeBinary). Alembic migrations (services/storage/migrations) are the only
way the schema reaches a database; a test checks they match these models.

Cascades run along one path only (SQL Server refuses multiple cascade paths):
dataset <- experiment <- run <- model_result <- metric, run <- event, model_result <- trained_model.

Reviewed as a SQL Server DBA would (migration 0002): no reserved or future
keywords as names, a binary collation on tenant columns (the server's default
collation compares case-insensitively, which would merge tenants "Acme" and
"acme"), an index behind every foreign key and every hot query (leaderboard,
run list, event log, the supervisor's "models since the best").
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Unicode,
    UnicodeText,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mssql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names: Alembic and SQL Server both need stable ones.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQL Server types spelled out: without a known server version (offline Alembic
# rendering) the dialect would fall back to the deprecated IMAGE / NTEXT / DATETIME.
Timestamp = DateTime().with_variant(
    mssql.DATETIME2(),  # type: ignore[no-untyped-call]  # SQLAlchemy leaves its __init__ unannotated
    "mssql",
)
LongText = UnicodeText().with_variant(
    mssql.NVARCHAR("max"),  # type: ignore[arg-type]  # SQL Server's "max" length: SQLAlchemy types lengths as int
    "mssql",
)
Bytes = LargeBinary().with_variant(
    mssql.VARBINARY("max"),  # type: ignore[no-untyped-call]  # SQLAlchemy leaves its __init__ unannotated
    "mssql",
)
# JSON documents as text: portable, and SQL Server's JSON type is too new to rely on.
JsonText = LongText
Id = String(40)
# Tenants compare byte for byte on SQL Server too (its default collation is case-insensitive).
TENANT_COLLATION = "Latin1_General_100_BIN2"
TenantId = String(64).with_variant(mssql.VARCHAR(64, collation=TENANT_COLLATION), "mssql")
# Event ids (automl.v1.Event.id) compare byte for byte too: they are idempotency keys.
EventId = String(64).with_variant(mssql.VARCHAR(64, collation=TENANT_COLLATION), "mssql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Content(Base):
    """Bytes stored once per distinct sha256: inline up to the limit, else in the blob store."""

    __tablename__ = "contents"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    inline_data: Mapped[bytes | None] = mapped_column(Bytes)
    blob_key: Mapped[str | None] = mapped_column(String(256))
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(TenantId)
    display_name: Mapped[str] = mapped_column(Unicode(256))
    description: Mapped[str] = mapped_column(LongText, default="")
    csv_options: Mapped[str] = mapped_column(JsonText)
    content_sha256: Mapped[str] = mapped_column(ForeignKey("contents.sha256"))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[str] = mapped_column("column_profiles", JsonText)
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)

    # content_sha256: the foreign key's index (garbage collection counts the users of a content).
    __table_args__ = (Index(None, "tenant", "create_time"), Index(None, "content_sha256"))


class Experiment(Base):
    """Client-chosen ids are unique per tenant, so rows have a surrogate key."""

    __tablename__ = "experiments"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(63))
    tenant: Mapped[str] = mapped_column(TenantId)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    display_name: Mapped[str] = mapped_column(Unicode(256))
    description: Mapped[str] = mapped_column(LongText, default="")
    target_column: Mapped[str] = mapped_column(Unicode(1024))
    task: Mapped[int] = mapped_column(Integer)
    resolved_task: Mapped[int] = mapped_column(Integer)
    primary_metric: Mapped[int] = mapped_column(Integer)
    cv_folds: Mapped[int] = mapped_column(Integer)
    holdout_fraction: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(BigInteger)
    allowed_model_families: Mapped[str] = mapped_column(JsonText)
    excluded_columns: Mapped[str] = mapped_column(JsonText)
    default_stop_conditions: Mapped[str] = mapped_column(JsonText)
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    update_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)

    __table_args__ = (
        UniqueConstraint("tenant", "id"),
        Index(None, "tenant", "create_time"),
        Index(None, "dataset_id"),
    )


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(TenantId)
    experiment_pk: Mapped[int] = mapped_column(ForeignKey("experiments.pk", ondelete="CASCADE"))
    state: Mapped[int] = mapped_column("run_state", Integer)
    stop_reason: Mapped[int] = mapped_column(Integer, default=0)
    status_message: Mapped[str] = mapped_column(LongText, default="")
    stop_conditions: Mapped[str] = mapped_column(JsonText)
    parallel_workers: Mapped[int] = mapped_column(Integer)
    primary_metric: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    start_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    end_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    heartbeat_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    runner_id: Mapped[str] = mapped_column(String(128), default="")
    models_evaluated: Mapped[int] = mapped_column(Integer, default=0)
    models_failed: Mapped[int] = mapped_column(Integer, default=0)
    # Candidates interrupted by a normal stop of the run (not failures); migration 0003.
    models_stopped: Mapped[int] = mapped_column(Integer, default=0)
    # What the runner adapted to or fell back on: a JSON list of lines; NULL for none.
    notes: Mapped[str | None] = mapped_column(JsonText)
    best_result_id: Mapped[str | None] = mapped_column(Id)
    best_score: Mapped[float | None] = mapped_column(Float)
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    # The queue and takeovers (migration 0006); NULL reads as none / 0.
    queue_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    claim_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    takeovers: Mapped[int | None] = mapped_column(Integer)
    prior_search_seconds: Mapped[float | None] = mapped_column(Float)
    # Not a column: a QUEUED run's place, set by the repository when it reads one.
    queue_position = 0

    __table_args__ = (
        Index(None, "tenant", "create_time"),
        Index(None, "experiment_pk", "create_time"),
        Index(None, "run_state"),
    )


class ModelResult(Base):
    __tablename__ = "model_results"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    tenant: Mapped[str] = mapped_column(TenantId)
    position: Mapped[int] = mapped_column("eval_order", Integer)  # INDEX and POSITION are reserved
    job_id: Mapped[str] = mapped_column(String(64), default="")
    model_family: Mapped[str] = mapped_column(String(128), default="")
    pipeline_steps: Mapped[str] = mapped_column(JsonText)
    model_json: Mapped[str] = mapped_column(LongText, default="")
    outcome: Mapped[int] = mapped_column(Integer)
    error_message: Mapped[str] = mapped_column(LongText, default="")
    folds: Mapped[str] = mapped_column(JsonText)
    primary_score: Mapped[float | None] = mapped_column(Float)
    folds_run: Mapped[int] = mapped_column(Integer, default=0)
    fit_time_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    score_time_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    was_new_best: Mapped[bool] = mapped_column(Boolean, default=False)
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    # Migration 0003; NULL on results stored before it (read as unset).
    sample_rows: Mapped[int | None] = mapped_column(Integer)
    job_type: Mapped[str | None] = mapped_column(String(64))
    # An ensemble's members: a JSON list of EnsembleMember (proto3 JSON); NULL for none.
    ensemble_members: Mapped[str | None] = mapped_column(JsonText)
    # Migration 0004: the artifact of its out-of-fold predictions; NULL: none kept.
    predictions_artifact_id: Mapped[str | None] = mapped_column(Id)

    # (run_id, create_time): the supervisor counts a run's results up to its best one every second.
    __table_args__ = (UniqueConstraint("run_id", "eval_order"), Index(None, "run_id", "create_time"))


class ModelResultMetric(Base):
    """One metric's summary of one result: the leaderboard ranks on (run, metric, mean)."""

    __tablename__ = "model_result_metrics"
    result_id: Mapped[str] = mapped_column(ForeignKey("model_results.id", ondelete="CASCADE"), primary_key=True)
    metric: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(Id)  # denormalised for the ranking index; no FK (one cascade path)
    mean: Mapped[float] = mapped_column(Float)
    std: Mapped[float] = mapped_column(Float)
    train_mean: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index(None, "run_id", "metric", "mean"),)


class Artifact(Base):
    __tablename__ = "artifacts"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(TenantId)
    kind: Mapped[str] = mapped_column(String(64))
    content_sha256: Mapped[str] = mapped_column(ForeignKey("contents.sha256"))
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)

    __table_args__ = (Index(None, "content_sha256"),)


class TrainedModel(Base):
    __tablename__ = "trained_models"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(TenantId)
    result_id: Mapped[str] = mapped_column(ForeignKey("model_results.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(Id)
    experiment_pk: Mapped[int] = mapped_column(Integer)
    state: Mapped[int] = mapped_column("model_state", Integer)
    error_message: Mapped[str] = mapped_column(LongText, default="")
    task: Mapped[int] = mapped_column(Integer, default=0)
    feature_columns: Mapped[str] = mapped_column(JsonText, default="[]")
    classes: Mapped[str] = mapped_column(JsonText, default="[]")
    training_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    fit_time_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    artifact_id: Mapped[str | None] = mapped_column(Id)
    holdout_evaluation: Mapped[str | None] = mapped_column(JsonText)
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    update_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    # Migration 0004: fitted with the holdout rows (NULL on older models: false).
    includes_holdout: Mapped[bool | None] = mapped_column(Boolean)

    # result_id: the foreign key's index (a deleted result cascades here; the model_result filter).
    __table_args__ = (Index(None, "tenant", "create_time"), Index(None, "run_id"), Index(None, "result_id"))


class Event(Base):
    """The durable event log. `payload` is the serialized automl.v1.Event.

    `event_id` is the publisher's id of the event (Event.id), stored once per
    tenant (migration 0007); NULL for events stored before ids existed, which
    the unique index leaves out (SQL Server needs it said: its unique indexes
    count NULLs as equal)."""

    __tablename__ = "events"
    global_sequence: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant: Mapped[str] = mapped_column(TenantId)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    experiment_pk: Mapped[int] = mapped_column(Integer)
    sequence: Mapped[int] = mapped_column("run_sequence", BigInteger)
    event_type: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(Bytes)
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    event_id: Mapped[str | None] = mapped_column(EventId)

    __table_args__ = (
        UniqueConstraint("run_id", "run_sequence"),
        Index(None, "tenant", "global_sequence"),
        Index(None, "experiment_pk", "global_sequence"),
        Index(
            "uq_events_tenant_event_id",
            "tenant",
            "event_id",
            unique=True,
            mssql_where=text("event_id IS NOT NULL"),
        ),
    )


class Subscription(Base):
    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(TenantId)
    run_id: Mapped[str] = mapped_column(Id, default="")
    experiment_id: Mapped[str] = mapped_column(String(63), default="")
    event_types: Mapped[str] = mapped_column(JsonText, default="[]")
    webhook_url: Mapped[str] = mapped_column(Unicode(2048), default="")
    webhook_secret: Mapped[str] = mapped_column(String(128), default="")
    webhook_status: Mapped[str | None] = mapped_column(JsonText)
    state: Mapped[int] = mapped_column("subscription_state", Integer)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)

    __table_args__ = (Index(None, "tenant", "create_time"),)


class TenantLock(Base):
    """One row per tenant that created a dataset or a run: the per-tenant quota
    checks lock it before they count (migration 0005), so that two concurrent
    creations cannot both pass under a limit."""

    __tablename__ = "tenant_locks"
    tenant: Mapped[str] = mapped_column(TenantId, primary_key=True)
    lock_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(TenantId)
    display_name: Mapped[str] = mapped_column(Unicode(256), default="")
    prefix: Mapped[str] = mapped_column("key_prefix", String(16), default="")  # PREFIX is a future T-SQL keyword
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    create_time: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    revoke_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
