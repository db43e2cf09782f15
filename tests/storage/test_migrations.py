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


def test_0003_gives_existing_runs_zero_stopped_and_keeps_them_on_the_way_down(engine):
    """runs.models_stopped is NOT NULL: a run stored before gets 0; the new
    columns come and go without rebuilding a table (on SQLite a rebuilt runs
    table would cascade to its results)."""
    migrate(engine, "0002")
    now = "CURRENT_TIMESTAMP"
    sha = "0" * 64
    true = "true" if engine.dialect.name == "postgresql" else "1"
    statements = [
        f"INSERT INTO contents (sha256, size_bytes, create_time) VALUES ('{sha}', 1, {now})",
        "INSERT INTO datasets (id, tenant, display_name, description, csv_options, content_sha256, size_bytes, "
        f"row_count, column_profiles, create_time) VALUES ('d1', 't', 'd', '', '{{}}', '{sha}', 1, 1, '[]', {now})",
        "INSERT INTO experiments (id, tenant, dataset_id, display_name, description, target_column, task, "
        "resolved_task, primary_metric, cv_folds, holdout_fraction, seed, allowed_model_families, excluded_columns, "
        f"default_stop_conditions, create_time, update_time) VALUES ('e1', 't', 'd1', 'e', '', 'y', 1, 1, 1, 5, 0.2, "
        f"0, '[]', '[]', '{{}}', {now}, {now})",
        "INSERT INTO runs (id, tenant, experiment_pk, run_state, stop_reason, status_message, stop_conditions, "
        "parallel_workers, primary_metric, create_time, runner_id, models_evaluated, models_failed, last_sequence) "
        f"SELECT 'r1', 't', pk, 4, 0, '', '{{}}', 1, 1, {now}, '', 3, 1, 0 FROM experiments WHERE id = 'e1'",
        "INSERT INTO model_results (id, run_id, tenant, eval_order, job_id, model_family, pipeline_steps, model_json, "
        "outcome, error_message, folds, folds_run, fit_time_seconds, score_time_seconds, was_new_best, create_time) "
        f"VALUES ('m1', 'r1', 't', 1, 'j', 'F', '[]', '', 1, '', '[]', 5, 0.0, 0.0, {true}, {now})",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    migrate(engine, "head")
    with engine.connect() as connection:
        row = connection.execute(text("SELECT models_stopped, notes FROM runs WHERE id = 'r1'")).one()
        assert tuple(row) == (0, None)
        result = connection.execute(text("SELECT sample_rows, job_type, ensemble_members FROM model_results")).one()
        assert tuple(result) == (None, None, None)
    migrate(engine, "0002", down=True)
    assert "models_stopped" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM model_results WHERE run_id = 'r1'")) == 1


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
