"""API keys: what a key looks like, how it is stored (only its SHA-256) and how
a call's bearer token becomes a tenant; failed key checks limited per client
address."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from automl.common import errors, interceptors, status
from automl.common.tenants import DEFAULT_TENANT
from automl.v1 import storage_service_pb2
from gateway.backends import Backends

KEY_PREFIX = "aml_"

# The HTTP door calls the gateway's gRPC server over a local socket, so the
# transport address of those calls is the socket, not the client. The door
# says which address it served, and proves it is the door with a token made
# per process; a call that does not come over the socket with that token is
# not believed (the public port ignores these keys whoever sends them).
CLIENT_ADDRESS_KEY = "x-automl-client-address"
DOOR_TOKEN_KEY = "x-automl-door-token"
MAX_CLIENTS = 10_000
"""Client addresses whose failures are remembered at once (memory is bounded)."""


def new_key() -> str:
    """A fresh key: 256 random bits, recognisable by its prefix (secret scanners)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_token(metadata: dict[str, Any]) -> str:
    value = str(metadata.get("authorization", ""))
    scheme, _, token = value.partition(" ")
    if not value:
        raise errors.Unauthenticated("no API key: send the metadata 'authorization: Bearer <key>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthenticated("the authorization metadata must be 'Bearer <key>'")
    return token.strip()


def client_address(transport: str, metadata: dict[str, Any], door_token: str) -> str:
    """Whom a call's failed key checks count against: its IP address, from
    gRPC's peer ("ipv4:203.0.113.7:50312", "ipv6:%5B2001:db8::1%5D:50312");
    for a call of the HTTP door (the local socket, "unix:", with the door's
    token), the address the door served. An IPv6 client counts by its /64,
    which one host usually holds whole: per address, it could go round the
    limit by changing addresses."""
    host = transport
    if transport.startswith("unix:"):
        claimed = str(metadata.get(DOOR_TOKEN_KEY, ""))
        if door_token and hmac.compare_digest(claimed.encode(), door_token.encode()):
            host = str(metadata.get(CLIENT_ADDRESS_KEY, "")) or transport
    elif transport.startswith(("ipv4:", "ipv6:")):
        host = urllib.parse.unquote(transport.partition(":")[2]).rpartition(":")[0].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address (a local socket): all such calls count together
    if isinstance(address, ipaddress.IPv6Address) and not address.is_loopback:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class TooManyFailures(errors.ResourceExhausted):
    """A client failed too many key checks lately: refused before any lookup.
    `retry_after_seconds` becomes a google.rpc.RetryInfo detail (and the HTTP
    door's Retry-After)."""

    def __init__(self, client: str, retry_after_seconds: float) -> None:
        wait = math.ceil(retry_after_seconds)
        super().__init__(f"too many failed API-key checks from {client}: retry in {wait} s")
        self.retry_after_seconds = float(wait)


@dataclass
class _Window:
    start: float
    failures: int = 0


class FailureLimit:
    """At most `limit` failed key checks per client address in a fixed window
    of `window_seconds` from its first failure; past it, the client is refused
    until the window ends. Memory is bounded: at most `max_clients` addresses
    are remembered, the oldest windows forgotten first (an attacker with that
    many addresses can clear a count, not grow the table). limit 0: no limit."""

    def __init__(self, limit: int, window_seconds: float, max_clients: int = MAX_CLIENTS) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_clients = max_clients
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # by start, oldest first

    def check(self, client: str) -> None:
        """Raise TooManyFailures if `client` has used up its failures."""
        window = self._windows.get(client)
        if self.limit <= 0 or window is None or window.failures < self.limit:
            return
        left = window.start + self.window_seconds - time.monotonic()
        if left > 0:
            raise TooManyFailures(client, left)

    def record(self, client: str) -> None:
        """One more failed check by `client`."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        window = self._windows.get(client)
        if window is None or now - window.start >= self.window_seconds:
            self._windows.pop(client, None)
            while self._windows:  # ended windows first, then the oldest, while full
                oldest = next(iter(self._windows.values()))
                if now - oldest.start < self.window_seconds and len(self._windows) < self.max_clients:
                    break
                self._windows.popitem(last=False)
            window = self._windows[client] = _Window(now)
        window.failures += 1


@dataclass
class _Known:
    tenant: str
    checked: float


class ApiKeyAuth:
    """Authenticates calls by API key, asking storage (by hash) and trusting the
    answer for `cache_seconds`, so that a busy client does not cost a storage
    round trip per call. Unknown and revoked keys are not cached.

    Failed checks (an unknown, revoked or malformed key) count against the
    caller's address in `failures`; a caller past the limit is refused
    RESOURCE_EXHAUSTED before storage is asked, whatever key it sends,
    except a key checked lately (cached), which costs no lookup and is no
    guess: clients behind the same NAT with working keys go on working.
    RESOURCE_EXHAUSTED rather than UNAUTHENTICATED because the key was not
    checked (it may be good), and it is the code clients back off on (HTTP
    429 with Retry-After). A call without any key is refused as before and
    not counted: it guesses nothing and costs no lookup."""

    def __init__(
        self,
        backends: Backends,
        cache_seconds: float,
        failures: FailureLimit | None = None,
        door_token: str = "",
    ) -> None:
        self.backends = backends
        self.cache_seconds = cache_seconds
        self.failures = failures or FailureLimit(0, 1.0)
        self.door_token = door_token
        self._known: dict[str, _Known] = {}

    @property
    def recheck_seconds(self) -> float:
        """How often an open stream's key is checked again: with answers at most
        this old, a revoked key's streams end within the cache window."""
        return self.cache_seconds / 2

    async def __call__(self, metadata: dict[str, Any], method: str) -> str:
        if not metadata.get("authorization"):
            bearer_token(metadata)  # raises "no API key": not counted
        if (tenant := self._cached(metadata, self.cache_seconds)) is not None:
            return tenant
        client = client_address(interceptors.peer(), metadata, self.door_token)
        self.failures.check(client)
        try:
            return await self._tenant(metadata, self.cache_seconds)
        except errors.Unauthenticated:
            self.failures.record(client)
            raise

    async def recheck(self, metadata: dict[str, Any], method: str) -> str:
        """The check again, for a stream under way (Unauthenticated once revoked);
        neither limited nor counted: the stream's key was good."""
        return await self._tenant(metadata, self.recheck_seconds)

    def _cached(self, metadata: dict[str, Any], max_age: float) -> str | None:
        """The tenant of a well-formed key checked less than `max_age` ago."""
        try:
            known = self._known.get(key_sha256(bearer_token(metadata)))
        except errors.Unauthenticated:
            return None
        if known is not None and time.monotonic() - known.checked < max_age:
            return known.tenant
        return None

    async def _tenant(self, metadata: dict[str, Any], max_age: float) -> str:
        digest = key_sha256(bearer_token(metadata))
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and now - known.checked < max_age:
            return known.tenant
        try:
            key = await self.backends.storage.LookupApiKey(storage_service_pb2.LookupApiKeyRequest(key_sha256=digest))
        except errors.NotFound:
            self._known.pop(digest, None)
            raise errors.Unauthenticated("unknown API key") from None
        except errors.AutoMLError as exc:
            self._known.pop(digest, None)
            raise errors.Unavailable(f"cannot check the API key now ({status.code_of(exc).name}); retry") from None
        if key.HasField("revoke_time"):
            self._known.pop(digest, None)
            raise errors.Unauthenticated(f"API key {key.prefix}... was revoked")
        if len(self._known) > 10_000:  # bounded: forget everything rather than grow
            self._known.clear()
        self._known[digest] = _Known(key.tenant, now)
        return key.tenant


async def no_auth(metadata: dict[str, Any], method: str) -> str:
    """AUTOML_AUTH=none: every caller is the single embedded tenant."""
    return DEFAULT_TENANT
