"""API keys: what a key looks like, how it is stored (only its SHA-256) and how
a call's bearer token becomes a tenant."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import grpc

from automl.common import errors
from automl.v1 import storage_service_pb2
from gateway.backends import Backends

KEY_PREFIX = "aml_"
DEFAULT_TENANT = "default"


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


@dataclass
class _Known:
    tenant: str
    checked: float


class ApiKeyAuth:
    """Authenticates calls by API key, asking storage (by hash) and trusting the
    answer for `cache_seconds`, so that a busy client does not cost a storage
    round trip per call. Unknown and revoked keys are not cached."""

    def __init__(self, backends: Backends, cache_seconds: float) -> None:
        self.backends = backends
        self.cache_seconds = cache_seconds
        self._known: dict[str, _Known] = {}

    @property
    def recheck_seconds(self) -> float:
        """How often an open stream's key is checked again: with answers at most
        this old, a revoked key's streams end within the cache window."""
        return self.cache_seconds / 2

    async def __call__(self, metadata: dict[str, Any], method: str) -> str:
        return await self._tenant(metadata, self.cache_seconds)

    async def recheck(self, metadata: dict[str, Any], method: str) -> str:
        """The check again, for a stream under way (Unauthenticated once revoked)."""
        return await self._tenant(metadata, self.recheck_seconds)

    async def _tenant(self, metadata: dict[str, Any], max_age: float) -> str:
        digest = key_sha256(bearer_token(metadata))
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and now - known.checked < max_age:
            return known.tenant
        try:
            key = await self.backends.storage.LookupApiKey(storage_service_pb2.LookupApiKeyRequest(key_sha256=digest))
        except grpc.aio.AioRpcError as exc:
            self._known.pop(digest, None)
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise errors.Unauthenticated("unknown API key") from None
            raise errors.Unavailable(f"cannot check the API key now ({exc.code().name}); retry") from None
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
