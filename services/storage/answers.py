"""Storage's answers to its hot reads, kept while the database has not changed.

A read's answer is a function of its request, its tenant and the database's
contents; the gateway asks the same few (a run being watched, page 1 of its
leaderboard, a tenant's runs) far more often than anything is written. So the
servicer keeps each answer under (method, tenant, request bytes), and drops
them all when the database's version moves.

The version comes from the database, not from this process's writes, so that
a write by anything else (a second storage process on the same file, the admin
command, a test's direct UPDATE) is seen too. SQLite says it in a microsecond:
`PRAGMA data_version` on a connection that never writes changes whenever
another connection commits. A database server has no such cheap question (it
would be a round trip, as dear as the read), so there the answers are not kept.

Why an answer is never served stale: the version is read before the answer
is looked up or loaded, and a loaded answer is kept only if no newer version
was seen meanwhile. An answer loaded across a commit is newer than the version
it is kept under, and the next read sees the commit's version and drops it.

Callers that miss the same answer at the same version wait for one load
instead of each loading it (after a commit, every caller of a busy read
misses at once): a load begun at version v reads what any caller that also
saw v would have read, since no commit came between their two looks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import Engine

M = TypeVar("M", bound=Message)

MAX_ANSWERS = 2048
MAX_BYTES = 32 * 1024 * 1024  # a leaderboard page of 500 full entries is ~1 MB


class SqliteVersion:
    """`PRAGMA data_version` of a SQLite file, on a connection of its own that
    never writes (the version moves on other connections' commits only)."""

    def __init__(self, database: str) -> None:
        self._connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            row = self._connection.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        self._connection.close()


def database_version(engine: Engine) -> SqliteVersion | None:
    """The cheap version of `engine`'s database, or None when it has none
    (a database server, or an in-memory SQLite database: one per connection)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return SqliteVersion(database)


class Answers:
    """A bounded LRU of read answers (protobuf messages, shared: never changed
    after they are kept), all dropped when the database's version moves."""

    def __init__(
        self,
        version: Callable[[], int] | None,
        max_answers: int = MAX_ANSWERS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._version = version
        self.max_answers = max_answers
        self.max_bytes = max_bytes
        self._answers: OrderedDict[Hashable, tuple[Message, int]] = OrderedDict()
        self._bytes = 0
        self._seen: int | None = None
        self._loading: dict[tuple[Hashable, int], asyncio.Future[Message]] = {}
        self.hits = 0
        self.misses = 0
        self.shared = 0  # misses that waited for another caller's load

    @property
    def enabled(self) -> bool:
        return self._version is not None

    async def read(self, key: Hashable, load: Callable[[], Awaitable[M]]) -> M:
        """The answer kept under `key` at the database's current version, or
        `load()`'s (kept unless the database moved on meanwhile). Errors are
        not kept: load() raises them each time."""
        version = self._current()
        if version is None:
            return await load()
        kept = self._answers.get(key)
        if kept is not None:
            self._answers.move_to_end(key)
            self.hits += 1
            return kept[0]  # type: ignore[return-value]  # kept under this key by load(): an M
        self.misses += 1
        flight = (key, version)
        if (loading := self._loading.get(flight)) is not None:
            try:
                shared = await asyncio.shield(loading)  # this caller leaving does not cancel the others' load
            except _LoaderLeft:
                return await self.read(key, load)  # its own load now
            self.shared += 1
            return shared  # type: ignore[return-value]  # the same key's load: an M
        loading = asyncio.get_running_loop().create_future()
        loading.add_done_callback(_retrieved)
        self._loading[flight] = loading
        try:
            answer = await load()
        except asyncio.CancelledError:
            loading.set_exception(_LoaderLeft())  # the waiters load for themselves
            raise
        except BaseException as exc:
            loading.set_exception(exc)  # the same request: the same error
            raise
        finally:
            del self._loading[flight]
        loading.set_result(answer)
        if self._seen == version:
            self._keep(key, answer)
        return answer

    def _current(self) -> int | None:
        """The database's version now (None: answers are not kept), the
        answers of an older one dropped."""
        if self._version is None:
            return None
        version = self._version()
        if version != self._seen:
            self._answers.clear()
            self._bytes = 0
            self._seen = version
        return version

    def _keep(self, key: Hashable, answer: Message) -> None:
        size = answer.ByteSize()
        if size > self.max_bytes // 8:  # one huge answer would push out everything else
            return
        if (old := self._answers.pop(key, None)) is not None:
            self._bytes -= old[1]
        self._answers[key] = (answer, size)
        self._bytes += size
        while len(self._answers) > self.max_answers or self._bytes > self.max_bytes:
            _, (_, dropped) = self._answers.popitem(last=False)
            self._bytes -= dropped

    def __len__(self) -> int:
        return len(self._answers)


class _LoaderLeft(Exception):
    """The caller that was loading an answer for others was cancelled."""


def _retrieved(future: asyncio.Future[Message]) -> None:
    """Marks a load's error as seen when no other caller waited for it."""
    if not future.cancelled():
        future.exception()
