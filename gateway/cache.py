"""Answers that no longer change, kept by the gateway (issue 23).

A run in a terminal state, its leaderboard pages and its model results do not
change any more, so the gateway answers them from memory instead of asking
storage each time:

- GetRun of a run in a terminal state;
- GetLeaderboard and ListModelResults pages of a run known to be terminal
  (from a GetRun, a ListRuns page or a WatchRun snapshot read through this
  gateway, or checked with storage before the page is read: a page read after
  the run was seen terminal is final);
- GetModelResult: a model result is written once and never updated.

Entries belong to a tenant: the key starts with the caller's tenant, so one
tenant's entry is never another's answer (a name another tenant cannot see
answers NOT_FOUND from storage, as before). The cache is an LRU of at most
`max_entries` answers, each kept at most `ttl_seconds`.

What can still change, and how it is bounded:

- Deletion. DeleteExperiment and DeleteDataset through this gateway drop every
  entry of the caller's tenant at once; a delete made through another gateway
  process is seen within `ttl_seconds` (AUTOML_GATEWAY_CACHE_TTL_SECONDS).
- A terminal run's `last_sequence` and `notes` still grow when a model of the
  run is trained or tested later (MODEL_TRAINED, MODEL_TESTED, RUN_NOTE
  events). TrainModel and TestModel through this gateway, and any event a
  WatchRun stream of this gateway sees for the run, drop the run's entries;
  otherwise they are at most `ttl_seconds` old.
- Trained models are not cached (a READY model's holdout_evaluation changes
  when it is tested).

A running run's answers (GetRun, its leaderboard and result pages) are kept
too, for `running_ttl_seconds` only (AUTOML_GATEWAY_RUNNING_TTL_SECONDS,
default 0.5 s): many clients following one run ask for the same answers many
times a second. They are dropped at once by any event of the run that a
WatchRun stream of this gateway sees (before the watchers get it, so a client
that reads after an event reads what the event says), by StopRun through this
gateway, and by anything that drops the run's or the tenant's entries. A read
that was on its way to storage while anything was dropped is not kept (it may
predate the change). A client that does not watch the run through this
gateway reads it at most running_ttl_seconds late.

ttl_seconds 0 or max_entries 0 turns the cache off; running_ttl_seconds 0
keeps nothing of a running run.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from automl.common.runs import TERMINAL_STATES
from automl.common.settings import Settings
from automl.v1 import run_pb2

RUNNING_RECHECK_SECONDS = 1.0
"""How long a run seen not terminal is not checked again before a page is
read (a running run's leaderboard costs at most one GetRun per second more)."""


class AnswerCache:
    """An LRU of immutable answers by (tenant, kind, key), each with the run it
    belongs to (for invalidation) and an expiry."""

    def __init__(self, max_entries: int, ttl_seconds: float, running_ttl_seconds: float = 0.0) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.enabled = max_entries > 0 and ttl_seconds > 0
        self.running_ttl_seconds = running_ttl_seconds if self.enabled else 0.0
        self._drops = 0  # how many times anything was dropped: a read across a drop is not kept
        self._entries: OrderedDict[tuple[str, str, Any], tuple[float, str, Any]] = OrderedDict()
        self._by_run: dict[tuple[str, str], set[tuple[str, str, Any]]] = {}  # (tenant, run) -> its keys
        self._memos: dict[int, tuple[Any, dict[str, Any]]] = {}  # id(answer) -> (answer, what is made of it)
        self._running: dict[tuple[str, str], float] = {}  # (tenant, run) -> until when it is taken as running
        self.hits = 0
        self.misses = 0

    @classmethod
    def of(cls, settings: Settings) -> AnswerCache:
        """The cache the settings ask for (AUTOML_GATEWAY_CACHE_*, AUTOML_GATEWAY_RUNNING_TTL_SECONDS)."""
        return cls(
            settings.gateway_cache_entries, settings.gateway_cache_ttl_seconds, settings.gateway_running_ttl_seconds
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tenant: str, kind: str, key: Any) -> Any:
        """The answer kept, or None."""
        if not self.enabled:
            return None
        k = (tenant, kind, key)
        entry = self._entries.get(k)
        if entry is None:
            self.misses += 1
            return None
        if entry[0] <= time.monotonic():
            self._remove(k)
            self.misses += 1
            return None
        self._entries.move_to_end(k)
        self.hits += 1
        return entry[2]

    def put(self, tenant: str, kind: str, key: Any, run: str, answer: Any, ttl_seconds: float | None = None) -> None:
        if not self.enabled:
            return
        k = (tenant, kind, key)
        if k in self._entries:
            self._remove(k)
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        self._entries[k] = (time.monotonic() + ttl, run, answer)
        if run:
            self._by_run.setdefault((tenant, run), set()).add(k)
        self._memos[id(answer)] = (answer, {})
        while len(self._entries) > self.max_entries:
            self._remove(next(iter(self._entries)))

    def memo(self, answer: Any) -> dict[str, Any] | None:
        """A dict kept with `answer` while it is in the cache (the HTTP door's
        JSON body, ETag and gzipped body of it: made once), or None for an
        answer the cache does not hold."""
        held = self._memos.get(id(answer))
        return held[1] if held is not None and held[0] is answer else None

    def _remove(self, k: tuple[str, str, Any]) -> None:
        _, run, answer = self._entries.pop(k)
        held = self._memos.get(id(answer))
        if held is not None and held[0] is answer:
            del self._memos[id(answer)]
        if run and (keys := self._by_run.get((k[0], run))) is not None:
            keys.discard(k)
            if not keys:
                del self._by_run[(k[0], run)]

    # ------------------------------------------------------------------ runs

    def terminal_run(self, tenant: str, name: str) -> run_pb2.Run | None:
        """The kept Run `name` (terminal by construction), or None."""
        run: run_pb2.Run | None = self.get(tenant, "run", name)
        return run

    def kept_run(self, tenant: str, name: str) -> run_pb2.Run | None:
        """The kept Run `name`: terminal, or read less than running_ttl_seconds
        ago while it was not; None when neither is kept."""
        run = self.terminal_run(tenant, name)
        if run is None and self.running_ttl_seconds:
            run = self.get(tenant, "running", name)
        return run

    def mark(self) -> int:
        """Taken before a read from storage, given back to saw_run or
        put_running: the read is kept only if nothing was dropped meanwhile."""
        return self._drops

    def saw_run(self, tenant: str, run: run_pb2.Run, mark: int | None = None) -> None:
        """Keep `run` if it is terminal; remember it is running otherwise, and
        keep it for running_ttl_seconds when read since `mark`."""
        if not self.enabled:
            return
        if run.state in TERMINAL_STATES:
            self._running.pop((tenant, run.name), None)
            self.put(tenant, "run", run.name, run.name, run)
        else:
            self.running(tenant, run.name)
            if mark is not None:
                self.put_running(tenant, "running", run.name, run.name, run, mark)

    def put_running(self, tenant: str, kind: str, key: Any, run: str, answer: Any, mark: int) -> None:
        """Keep an answer about the running `run` for running_ttl_seconds,
        unless something was dropped since `mark` (the answer may predate it)."""
        if self.running_ttl_seconds and mark == self._drops:
            self.put(tenant, kind, key, run, answer, self.running_ttl_seconds)

    def running(self, tenant: str, name: str) -> None:
        if len(self._running) > max(1000, self.max_entries):
            self._running.clear()  # bounded: forget rather than grow
        self._running[(tenant, name)] = time.monotonic() + RUNNING_RECHECK_SECONDS

    def known_running(self, tenant: str, name: str) -> bool:
        until = self._running.get((tenant, name))
        return until is not None and until > time.monotonic()

    # ---------------------------------------------------------- invalidation

    def drop_run(self, tenant: str, run: str) -> None:
        """Forget what is kept of `run` (its events say something changed)."""
        self._drops += 1
        self._running.pop((tenant, run), None)
        for k in list(self._by_run.get((tenant, run), ())):
            self._remove(k)

    def drop_runs(self, tenant: str) -> None:
        """Forget every kept Run of `tenant` (their last_sequence may grow)."""
        self._drops += 1
        for k in [k for k in self._entries if k[0] == tenant and k[1] in ("run", "running")]:
            self._remove(k)

    def drop_tenant(self, tenant: str) -> None:
        """Forget everything of `tenant` (something of it was deleted)."""
        self._drops += 1
        for k in [k for k in self._entries if k[0] == tenant]:
            self._remove(k)
        for running in [k for k in self._running if k[0] == tenant]:
            del self._running[running]
