"""Storage keeps its hot reads' answers (services/storage/answers.py) while the
database has not changed, and never serves one after a change: not after its
own writes, not after another connection's."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import update

from automl.common import errors
from automl.v1 import common_pb2 as c
from automl.v1 import run_pb2
from automl.v1 import storage_service_pb2 as pb
from services.storage import schema
from services.storage.answers import Answers, SqliteVersion
from tests.storage.test_search_records import result, run


async def test_reads_are_kept_until_anything_is_written(storage):
    answers = storage.servicer.answers
    sqlite = storage.settings.database.startswith("sqlite")
    assert answers.enabled is sqlite  # a database server has no cheap version: nothing is kept
    created = await run(storage)
    get = run_pb2.GetRunRequest(name=created.name)
    board = run_pb2.GetLeaderboardRequest(run=created.name)

    first = await storage.stub.GetRun(get)
    hits = answers.hits
    assert await storage.stub.GetRun(get) == first
    assert answers.hits == hits + sqlite

    # Its own write: a state change, then results (the leaderboard and the run's counters).
    await storage.stub.UpdateRunState(
        pb.UpdateRunStateRequest(
            name=created.name, expected_states=[c.RUN_STATE_PENDING], state=c.RUN_STATE_RUNNING, runner_id="r1"
        )
    )
    assert (await storage.stub.GetRun(get)).state == c.RUN_STATE_RUNNING
    assert (await storage.stub.GetLeaderboard(board)).total_size == 0
    await storage.stub.BatchCreateModelResults(
        pb.BatchCreateModelResultsRequest(run=created.name, model_results=[result(0.8)])
    )
    assert (await storage.stub.GetRun(get)).models_evaluated == 1
    assert [e.model_result.primary_score for e in (await storage.stub.GetLeaderboard(board)).entries] == [
        pytest.approx(0.8)
    ]

    # Another connection's write, behind storage's back.
    with storage.servicer.store.engine.begin() as connection:
        connection.execute(
            update(schema.Run).where(schema.Run.id == created.name.split("/")[1]).values(status_message="x")
        )
    assert (await storage.stub.GetRun(get)).status_message == "x"

    listed = await storage.stub.ListRuns(run_pb2.ListRunsRequest())
    second = await run(storage)
    assert [r.name for r in (await storage.stub.ListRuns(run_pb2.ListRunsRequest())).runs] == [
        second.name,
        *(r.name for r in listed.runs),
    ]

    key = await storage.stub.CreateApiKey(
        pb.CreateApiKeyRequest(api_key=pb.ApiKey(tenant="acme", display_name="ci", prefix="ak_12"), key_sha256="c" * 64)
    )
    lookup = pb.LookupApiKeyRequest(key_sha256="c" * 64)
    assert not (await storage.stub.LookupApiKey(lookup)).HasField("revoke_time")
    await storage.stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.name))
    assert (await storage.stub.LookupApiKey(lookup)).HasField("revoke_time")


def one_value_database(folder: Path) -> tuple[sqlite3.Connection, SqliteVersion]:
    """A WAL database of one value (1), a connection that writes it, and its version."""
    path = folder / "a.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (v INTEGER)")
    writer.execute("INSERT INTO t VALUES (1)")
    return writer, SqliteVersion(str(path))


async def test_an_answer_loaded_across_a_commit_is_not_kept_past_it(tmp_path: Path):
    writer, version = one_value_database(tmp_path)
    answers = Answers(version)

    def value() -> run_pb2.Run:
        (v,) = writer.execute("SELECT v FROM t").fetchone()
        return run_pb2.Run(name=f"runs/{v}")

    async def stale_load() -> run_pb2.Run:
        answer = value()  # read before the commit lands...
        writer.execute("UPDATE t SET v = 2")  # ...then it lands, while the answer is on its way
        return answer

    async def load() -> run_pb2.Run:
        return value()

    assert (await answers.read("k", stale_load)).name == "runs/1"
    assert (await answers.read("k", load)).name == "runs/2", "the answer read before the commit was served"
    assert (await answers.read("k", load)).name == "runs/2" and answers.hits == 1

    async def overtaken_load() -> run_pb2.Run:
        answer = value()
        writer.execute("UPDATE t SET v = 3")
        assert (await answers.read("k", load)).name == "runs/3"  # a later reader sees the commit first
        return answer

    await answers.read("other", overtaken_load)
    assert (await answers.read("other", load)).name == "runs/3", "an answer older than a version seen was kept"
    version.close()
    writer.close()


async def test_the_answers_are_bounded_by_count_and_bytes():
    answers = Answers(lambda: 1, max_answers=3, max_bytes=10_000)

    def load(size: int):
        async def loaded() -> run_pb2.Run:
            return run_pb2.Run(status_message="x" * size)

        return loaded

    for k in range(5):
        await answers.read(k, load(10))
    assert len(answers) == 3
    await answers.read("big", load(2_000))  # more than an eighth of the bytes: served, not kept
    await answers.read("big", load(2_000))
    assert answers.misses == 7 and len(answers) == 3
    for k in range(3):
        await answers.read(("mid", k), load(1_200))
    assert len(answers) == 3


async def test_callers_missing_together_share_one_load_of_their_version(tmp_path: Path):
    writer, version = one_value_database(tmp_path)
    answers = Answers(version)
    loads = 0

    async def load() -> run_pb2.Run:
        nonlocal loads
        loads += 1
        (v,) = writer.execute("SELECT v FROM t").fetchone()
        await asyncio.sleep(0.05)  # a read in a worker thread
        return run_pb2.Run(name=f"runs/{v}")

    got = await asyncio.gather(*(answers.read("k", load) for _ in range(10)))
    assert {r.name for r in got} == {"runs/1"} and loads == 1 and answers.shared == 9

    # A caller that saw a later version does not take the answer of a load begun before it.
    first = asyncio.create_task(answers.read("j", load))
    await asyncio.sleep(0.01)
    writer.execute("UPDATE t SET v = 2")
    assert (await answers.read("j", load)).name == "runs/2"
    await first

    # The loader leaves (its client went away): the others load for themselves.
    leaving = asyncio.create_task(answers.read("m", load))
    await asyncio.sleep(0.01)
    staying = asyncio.create_task(answers.read("m", load))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert (await staying).name == "runs/2"

    # An error is the same request's answer: shared too, never kept.
    async def refused() -> run_pb2.Run:
        await asyncio.sleep(0.05)
        raise errors.NotFound("runs/x does not exist")

    results = await asyncio.gather(*(answers.read("x", refused) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, errors.NotFound) for r in results) and len(answers) == 2
    version.close()
    writer.close()
