"""Per-tenant limits the gateway keeps itself: open event streams.

WatchRun and Subscribe hold a stream open for as long as the client wants
(over gRPC, or over the HTTP door, which calls the same servicer). Each
tenant may hold AUTOML_TENANT_MAX_OPEN_STREAMS of them at once on one gateway
process; one more is refused RESOURCE_EXHAUSTED until one closes. The count
lives in this process (a counter per tenant, touched only from its event
loop): with several gateway replicas, a tenant may hold that many on each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from automl.common import errors


class StreamQuota:
    """Open streams per tenant, at most `limit` each (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        """Count one stream of `tenant` while the block runs; refuse it past the limit."""
        held = self.open.get(tenant, 0)
        if self.limit and held >= self.limit:
            raise errors.ResourceExhausted(
                f"the tenant holds {held:,} open streams (WatchRun, Subscribe), the most "
                f"AUTOML_TENANT_MAX_OPEN_STREAMS ({self.limit:,}) allows: close one first, or ask the operator to "
                "raise it"
            )
        self.open[tenant] = held + 1
        try:
            yield
        finally:
            left = self.open[tenant] - 1
            if left:
                self.open[tenant] = left
            else:
                del self.open[tenant]  # no entry left behind per tenant ever seen
