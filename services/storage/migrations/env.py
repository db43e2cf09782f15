"""Alembic environment: online with the connection db.upgrade() hands in,
offline (render_sql) from the URL alone."""

from __future__ import annotations

from alembic import context

from services.storage.schema import Base

config = context.config
connection = config.attributes.get("connection")

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
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: Alembic recreates tables in batch mode.
        render_as_batch=config.attributes.get("render_as_batch", connection.dialect.name == "sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()
