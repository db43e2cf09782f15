"""Alembic environment: online with the connection db.upgrade() hands in,
offline (render_sql) from the URL alone."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from services.storage.schema import Base

config = context.config
connection: Connection | None = config.attributes.get("connection")  # db.upgrade() hands it in

if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    if connection is None:
        raise RuntimeError("online migrations run through services.storage.db.upgrade(), which hands in a connection")
    # SQLite cannot ALTER most things: Alembic recreates tables in batch mode.
    batch: bool = config.attributes.get("render_as_batch", connection.dialect.name == "sqlite")
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=batch)
    with context.begin_transaction():
        context.run_migrations()
