"""SQL Server without a server: the migrations rendered as T-SQL (golden file,
reviewed like a DBA would), the ORM schema compiled by the mssql dialect, and
pyodbc importable. With AUTOML_TEST_MSSQL_URL set, every storage test also runs
against that live server (tests/storage/conftest.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateIndex, CreateTable

from services.storage import db, schema

GOLDEN = Path(__file__).parent / "golden" / "mssql_migrations.sql"
MSSQL_URL = "mssql+pyodbc://user:password@sqlserver:1433/automl?driver=ODBC+Driver+18+for+SQL+Server"
# T-SQL reserved keywords that could plausibly be chosen as names here.
RESERVED = {
    "index", "key", "order", "user", "file", "table", "column", "group", "plan", "schema", "state", "percent",
    "function", "identity", "public", "rule", "size", "open", "close", "current", "external", "view", "values",
    "position", "sequence", "columns", "level", "action", "value", "zone", "section", "session", "time",
    "prefix", "postfix", "data", "result", "class", "path", "role", "row", "rows", "date", "first", "last",
}  # fmt: skip


def test_migrations_render_as_the_reviewed_tsql():
    rendered = db.render_sql(MSSQL_URL)
    if os.environ.get("AUTOML_UPDATE_GOLDEN"):
        GOLDEN.write_text(rendered)
    assert GOLDEN.exists(), "run with AUTOML_UPDATE_GOLDEN=1 once to write the golden file"
    assert rendered == GOLDEN.read_text(), "migrations changed: review the T-SQL, then AUTOML_UPDATE_GOLDEN=1"


def test_tsql_is_what_a_dba_expects():
    sql = GOLDEN.read_text()
    assert not re.search(r"\b(TEXT|NTEXT|IMAGE)\b", sql), "deprecated large types"
    assert not re.search(r"\bDATETIME\b(?!2)", sql), "DATETIME instead of DATETIME2"
    assert "inline_data VARBINARY(max) NULL" in sql
    assert "payload VARBINARY(max) NOT NULL" in sql
    assert "display_name NVARCHAR(256) NOT NULL" in sql
    assert "model_json NVARCHAR(max) NOT NULL" in sql
    assert "global_sequence BIGINT NOT NULL IDENTITY" in sql
    assert "ix_model_result_metrics_run_id_metric_mean" in sql, "the leaderboard's index"
    assert "ix_runs_experiment_pk_create_time" in sql, "the run list's index"
    assert "uq_events_run_id_run_sequence" in sql, "the event log's per-run index"
    # Event ids once per tenant; events stored before ids have none, and SQL Server's
    # unique indexes count NULLs as equal unless filtered.
    assert (
        "CREATE UNIQUE INDEX uq_events_tenant_event_id ON events (tenant, event_id) WHERE event_id IS NOT NULL" in sql
    )
    assert "ix_model_results_run_id_create_time" in sql, "the supervisor's models-since-best count"
    foreign_keys = (("trained_models", "result_id"), ("datasets", "content_sha256"), ("artifacts", "content_sha256"))
    for table, column in foreign_keys:
        assert f"CREATE INDEX ix_{table}_{column} ON {table} ({column})" in sql, "a foreign key without an index"
    for table in ("api_keys", "artifacts", "datasets", "events", "experiments", "model_results", "runs",
                  "subscriptions", "trained_models"):  # fmt: skip
        assert f"ALTER TABLE {table} ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL" in sql
    assert "EXEC sp_rename 'api_keys.prefix', key_prefix, 'COLUMN'" in sql
    identifiers = re.findall(r"\b(?:CONSTRAINT|INDEX|TABLE)\s+(\w+)", sql)
    assert identifiers and max(len(i) for i in identifiers) <= 128


def test_no_reserved_words_as_names():
    for table in schema.Base.metadata.tables.values():
        assert table.name.lower() not in RESERVED, table.name
        for column in table.columns:
            assert column.name.lower() not in RESERVED, f"{table.name}.{column.name}"


def test_tenants_compare_byte_for_byte_on_sql_server():
    """SQL Server's default collation is case-insensitive: "Acme" would read "acme"'s data."""
    dialect = mssql.dialect()
    for table in schema.Base.metadata.tables.values():
        if "tenant" in table.columns:
            ddl = str(CreateTable(table).compile(dialect=dialect))
            assert f"tenant VARCHAR(64) COLLATE {schema.TENANT_COLLATION} NOT NULL" in ddl, table.name


def test_tenant_filters_bind_as_varchar_on_sql_server():
    """pyodbc sends str as NVARCHAR unless told: against a VARCHAR column that
    is an implicit conversion on every row, and no index seek."""
    pyodbc = pytest.importorskip("pyodbc", reason="the ODBC runtime: run scripts/install-system-deps.sh")
    from sqlalchemy.dialects.mssql.pyodbc import dialect

    for column in (schema.Run.__table__.c.tenant, schema.Run.__table__.c.id):
        assert column.type.dialect_impl(dialect()).get_dbapi_type(pyodbc) == pyodbc.SQL_VARCHAR, column


def test_schema_compiles_for_sql_server_2019():
    dialect = mssql.dialect()
    dialect.server_version_info = (15, 0)  # SQL Server 2019
    for table in schema.Base.metadata.sorted_tables:
        assert "CREATE TABLE" in str(CreateTable(table).compile(dialect=dialect))
        for index in table.indexes:
            assert re.match(r"CREATE (UNIQUE )?INDEX", str(CreateIndex(index).compile(dialect=dialect)))


def test_pyodbc_imports_with_the_odbc_runtime():
    try:
        import pyodbc
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"pyodbc cannot load the ODBC runtime ({exc}): run scripts/install-system-deps.sh")
        pytest.skip(f"ODBC runtime missing ({exc}): run scripts/install-system-deps.sh")
    assert pyodbc.version


@pytest.mark.skipif(
    not os.environ.get("AUTOML_TEST_MSSQL_URL"),
    reason="live SQL Server tests skipped: set "
    "AUTOML_TEST_MSSQL_URL=mssql+pyodbc://... to run every storage test against it",
)
def test_live_sql_server_is_reachable():
    from sqlalchemy import text

    engine = db.make_engine(os.environ["AUTOML_TEST_MSSQL_URL"])
    with engine.connect() as connection:
        assert "Microsoft SQL Server" in connection.scalar(text("SELECT @@VERSION"))


def test_pagination_renders_offset_fetch_on_sql_server():
    from sqlalchemy import select

    from services.storage import query, repository

    dialect = mssql.dialect()
    dialect.server_version_info = (15, 0)  # what a live SQL Server 2019 connection sets up
    dialect._setup_version_attributes()
    runs_page = repository.paged(select(repository.RUNS.c.id), (repository.RUNS.c.id,), query.Page(100, 50))
    runs = str(runs_page.compile(dialect=dialect))
    assert re.search(r"OFFSET .* ROWS\s+FETCH FIRST .* ROWS ONLY", runs), runs
    sql = str(repository.LEADERBOARD_PAGE[True, True].compile(dialect=dialect))
    assert "ORDER BY model_result_metrics.mean DESC, model_results.eval_order" in sql
    assert re.search(r"OFFSET .* ROWS\s+FETCH FIRST .* ROWS ONLY", sql), sql
    bound = str(repository.LEADERBOARD_MEANS[True].compile(dialect=dialect))
    assert "ORDER BY model_result_metrics.mean DESC" in bound
    assert re.search(r"OFFSET .* ROWS\s+FETCH FIRST .* ROWS ONLY", bound), bound
