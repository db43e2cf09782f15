"""Storage at start-up, as the compose file runs it: a database server that is
still starting is waited for (bounded, one log line per try), a database the
server does not have yet is created, and a server that never answers stops
the process with one clear line once the wait is over."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import pytest

from services.storage import db
from tests.conftest import ROOT, spawn, suite_env, wait_serving
from tests.ports import free_port
from tests.servers import PostgresServer, _missing, postgres_bindir


def wait_for_line(log, text: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"storage exited: {log.read_text(errors='replace')[-2000:]}"
        assert time.monotonic() < deadline, f"no {text!r} in the log after {timeout} s"
        time.sleep(0.1)


@pytest.mark.slow
def test_storage_waits_for_a_late_postgresql_then_creates_its_database(tmp_path):
    bindir = postgres_bindir()
    if bindir is None:
        _missing("PostgreSQL server binaries not found under /usr/lib/postgresql")
    port = free_port()
    server = PostgresServer(bindir, port=port)
    env = suite_env(tmp_path) | {
        "AUTOML_DATABASE_URL": f"postgresql+psycopg://{server.user}@127.0.0.1:{port}/automl_late",
        "AUTOML_DATABASE_WAIT_SECONDS": "120",
    }
    log = tmp_path / "storage.log"
    proc = spawn("services.storage", env, log)
    try:
        wait_for_line(log, "waiting for the database", proc)  # nothing listens yet
        server.start()  # the server comes up while storage waits
        wait_serving(f"127.0.0.1:{env['AUTOML_STORAGE_PORT']}", "automl.v1.Storage", proc, timeout=60, log=log)
        text = log.read_text()
        assert "created the database: the server had none by that name" in text
        assert "database answers" in text
        with psycopg.connect(f"host=127.0.0.1 port={port} user={server.user} dbname=automl_late") as connection:
            (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        assert version == "0007"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        server.stop()


def test_storage_stops_with_one_clear_line_when_the_database_never_answers(tmp_path):
    port = free_port()  # nothing listens there
    env = suite_env(tmp_path) | {
        "AUTOML_DATABASE_URL": f"postgresql+psycopg://automl:secret@127.0.0.1:{port}/automl",
        "AUTOML_DATABASE_WAIT_SECONDS": "2",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "services.storage"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed >= 2, "gave up before the wait was over"
    assert result.stderr.count('msg="waiting for the database"') >= 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"storage: database postgresql+psycopg://automl:***@127.0.0.1:{port}/automl did not answer within 2 s "
        "(AUTOML_DATABASE_WAIT_SECONDS): "
    ), last
    assert "Connection refused" in last
    assert "secret" not in result.stderr, "the password leaked into the log"


def test_the_wait_backs_off_and_is_bounded():
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    with pytest.raises(db.DatabaseUnavailable):
        db.prepare(f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x", 20, sleep=sleep, clock=lambda: now[0])
    assert pauses[:4] == [0.5, 1.0, 2.0, 4.0] and max(pauses) == 5.0
    assert sum(pauses) == pytest.approx(20)


def test_an_embedded_sqlite_file_is_never_waited_for(tmp_path):
    def sleep(seconds: float) -> None:
        raise AssertionError("waited for a SQLite file")

    db.prepare(f"sqlite:///{tmp_path / 'nowhere' / 'automl.db'}", 60, sleep=sleep)
