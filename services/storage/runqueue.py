"""The order in which QUEUED runs start: fair between tenants.

Runs taken over (their runner was lost) come first, oldest first: they had
started already. Then a tenant's n-th queued run (by the time it entered the
queue), counting the runs it already has running as places it holds, comes
after every other tenant's earlier places: one tenant's ten runs do not hold
back another's one, and a tenant with runs under way yields to one without.
Between equal places, the tenant a runner served least recently goes first:
a runner that frees up does not go back to the tenant whose run just ended.
Pure functions of what storage holds, so every reader sees one order.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Queued:
    run_id: str
    tenant: str
    queue_time: dt.datetime
    taken_over: bool


NEVER = dt.datetime.min


def fair_order(
    queued: Iterable[Queued], running: Mapping[str, int], served: Mapping[str, dt.datetime] | None = None
) -> list[str]:
    """Run ids of `queued` in the order they start; `running`: each tenant's
    runs that hold or are about to hold a runner (PENDING, RUNNING, STOPPING);
    `served`: when a runner last claimed a run of each tenant."""
    served = served or {}
    by_tenant: dict[str, list[Queued]] = defaultdict(list)
    for entry in queued:
        by_tenant[entry.tenant].append(entry)
    keyed = []
    for tenant, entries in by_tenant.items():
        entries.sort(key=lambda e: (e.queue_time, e.run_id))
        for place, entry in enumerate(entries):
            key = (
                not entry.taken_over,
                running.get(tenant, 0) + place,
                served.get(tenant) or NEVER,
                entry.queue_time,
                entry.run_id,
            )
            keyed.append((key, entry))
    keyed.sort(key=lambda pair: pair[0])
    return [entry.run_id for _, entry in keyed]


def positions(
    queued: Iterable[Queued], running: Mapping[str, int], served: Mapping[str, dt.datetime] | None = None
) -> dict[str, int]:
    """1-based queue position of each queued run id."""
    return {run_id: i + 1 for i, run_id in enumerate(fair_order(queued, running, served))}
