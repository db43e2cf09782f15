"""The Alembic migrations against the models, on SQLite and a real PostgreSQL:
the migrated schema is the one the ORM declares, an upgraded database keeps
its rows, and every migration steps back down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from services.storage import db, schema


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path) -> Engine:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = db.make_engine(url)
    yield engine
    engine.dispose()


def migrate(engine: Engine, revision: str, down: bool = False) -> None:
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_migrated_schema_is_the_models(engine):
    db.upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), schema.Base.metadata)
    assert differences == [], "the models and the migrations differ: add a migration"


def test_upgrade_keeps_rows_and_every_migration_steps_down(engine):
    migrate(engine, "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_keys (id, tenant, display_name, prefix, key_sha256, create_time) "
                "VALUES ('k1', 'acme', 'ci', 'amk_abc', :sha, CURRENT_TIMESTAMP)"
            ),
            {"sha": "0" * 64},
        )
    migrate(engine, "head")
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT key_prefix FROM api_keys WHERE id = 'k1'")) == "amk_abc"
    indexes = {i["name"] for i in inspect(engine).get_indexes("trained_models")}
    assert "ix_trained_models_result_id" in indexes
    migrate(engine, "base", down=True)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine, "head")
    assert "key_prefix" in {c["name"] for c in inspect(engine).get_columns("api_keys")}


def test_the_process_migrates_in_a_child_without_loading_alembic(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'child.db'}"
    db.upgrade_in_child(url)
    engine = db.make_engine(url)
    try:
        assert "datasets" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    monkeypatch.chdir(tmp_path)  # a relative sqlite path is the parent's, not the child's
    db.upgrade_in_child("sqlite:///relative.db")
    assert (tmp_path / "relative.db").exists()
    with pytest.raises(db.MigrationFailed, match="schema migration failed"):
        db.upgrade_in_child("nosuchdialect://x")
    # the serving process imports db without Alembic (13 MB it would keep)
    probe = "import sys, services.storage.server; print('alembic' in sys.modules)"
    root = Path(db.__file__).resolve().parents[2]
    assert subprocess.check_output([sys.executable, "-c", probe], text=True, cwd=root).strip() == "False"
