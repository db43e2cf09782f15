"""Database engines and schema migrations, chosen from the URL.

sqlite:///path            embedded default (WAL journal, foreign keys on)
postgresql+psycopg://...  PostgreSQL
mssql+pyodbc://...        SQL Server (production), fast_executemany on

Before migrating, `prepare()` waits for a database server that is still
starting and creates the database when the server has none by that name.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Engine, NullPool, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("automl.storage.db")
MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    """An engine for `url` with the settings each backend needs."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        # A file has no server to lose: no ping before each checkout (a tenth of
        # storage's CPU per GetRun). As many pooled connections as the threads
        # that use them (asyncio's default executor): with QueuePool's 5, the
        # sixth thread opened and closed a connection (and its pragmas) per call.
        if parsed.database and parsed.database != ":memory:":
            kwargs["pool_pre_ping"] = False
            kwargs["pool_size"] = max(5, min(32, (os.cpu_count() or 1) + 4))
    elif parsed.get_backend_name() == "mssql":
        kwargs["fast_executemany"] = True
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class DatabaseUnavailable(Exception):
    """The database server did not answer within the wait; the message says why."""


# Per-attempt connection timeout (seconds) of the start-up probe, by backend:
# without one, a host that drops packets holds one attempt for minutes.
_PROBE_TIMEOUT = {"postgresql": {"connect_timeout": 5}, "mssql": {"timeout": 5}}
# The database every login may connect to, where CREATE DATABASE runs.
_SERVER_DATABASE = {"postgresql": "postgres", "mssql": "master"}


def prepare(
    url: str,
    wait_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Make `url`'s database reachable before the migrations run: retry a
    server that does not answer yet for up to `wait_seconds` (one log line
    per try, then DatabaseUnavailable with the last error), and create the
    database, like the blob store's bucket, when the server answers but has
    none by that name. A SQLite file needs neither."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return
    shown = parsed.render_as_string(hide_password=True)
    deadline = clock() + wait_seconds
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            _probe(parsed)
        except DBAPIError as exc:
            reason = _reason(exc)
            if _create_if_missing(parsed, shown):
                continue
            remaining = deadline - clock()
            if remaining <= 0:
                raise DatabaseUnavailable(
                    f"database {shown} did not answer within {wait_seconds:g} s "
                    f"(AUTOML_DATABASE_WAIT_SECONDS): {reason}"
                ) from None
            pause = min(delay, remaining)
            log.warning(
                "waiting for the database",
                extra={"database": shown, "attempt": attempt, "retry_in_s": round(pause, 2), "error": reason},
            )
            sleep(pause)
            delay = min(delay * 2, 5.0)
        else:
            if attempt > 1:
                log.info("database answers", extra={"database": shown, "attempts": attempt})
            return


def _probe_engine(url: URL, **kwargs: Any) -> Engine:
    connect_args = _PROBE_TIMEOUT.get(url.get_backend_name(), {})
    return create_engine(url, poolclass=NullPool, connect_args=connect_args, **kwargs)


def _probe(url: URL) -> None:
    engine = _probe_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def _create_if_missing(url: URL, shown: str) -> bool:
    """Create `url`'s database when its server answers and has none by that
    name; True if created. False when the server does not answer (yet), the
    database exists, or the login may not create it (logged)."""
    backend = url.get_backend_name()
    if backend not in _SERVER_DATABASE or not url.database:
        return False
    name = url.database
    engine = _probe_engine(url.set(database=_SERVER_DATABASE[backend]), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if backend == "mssql":
                exists = connection.scalar(text("SELECT DB_ID(:name)"), {"name": name}) is not None
            else:
                exists = connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if exists:
                return False
            quoted = engine.dialect.identifier_preparer.quote_identifier(name)
            try:
                connection.execute(text(f"CREATE DATABASE {quoted}"))
                if backend == "mssql":
                    # Readers see the last committed version instead of waiting on
                    # writers' locks: the behaviour the suite has on PostgreSQL.
                    connection.execute(text(f"ALTER DATABASE {quoted} SET READ_COMMITTED_SNAPSHOT ON"))
            except DBAPIError as exc:
                log.warning("cannot create the database", extra={"database": shown, "error": _reason(exc)})
                return False
    except DBAPIError:
        return False  # the server itself does not answer yet
    finally:
        engine.dispose()
    log.warning("created the database: the server had none by that name", extra={"database": shown})
    return True


def _reason(exc: DBAPIError) -> str:
    """The driver's message, first line, without SQLAlchemy's statement and link."""
    lines = str(exc.orig).strip().splitlines()
    return (lines[0] if lines else type(exc.orig).__name__)[:300]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, much faster than FULL
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # only where migrations run: see upgrade_in_child

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema of `engine`'s database to the newest migration."""
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def upgrade_in_child(url: str) -> None:
    """`upgrade` the database at `url` in a child interpreter, for the storage
    process: Alembic brings Mako, Pygments and the DDL of every dialect (13 MB
    that a process keeps once imported), needed only for the minute of the
    migration. The URL goes on stdin, not the command line (it may hold a
    password). Raises MigrationFailed with the child's last lines."""
    # Same working directory (a relative sqlite path means the same file); the
    # suite's root on the path so that the child finds this module.
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "services.storage.db"],
        input=url,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise MigrationFailed(f"schema migration failed (exit {result.returncode}):\n{tail}")


class MigrationFailed(Exception):
    """The child that ran the migrations failed; the message holds its last lines."""


def render_sql(url: str) -> str:
    """The migrations as the SQL script they run on `url`'s dialect (offline; no connection)."""
    from alembic import command

    config = alembic_config(url)
    buffer = io.StringIO()
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    return buffer.getvalue()


if __name__ == "__main__":  # upgrade_in_child's child: the URL on stdin
    _engine = make_engine(sys.stdin.read())
    try:
        upgrade(_engine)
    finally:
        _engine.dispose()
