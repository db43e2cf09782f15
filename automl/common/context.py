"""Per-call context (request id, tenant) carried in gRPC metadata between
services and in context variables within one."""

from __future__ import annotations

import contextvars
import os

REQUEST_ID_KEY = "x-request-id"
TENANT_KEY = "x-automl-tenant"

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def new_request_id() -> str:
    return os.urandom(16).hex()  # 128 random bits as 32 hex digits, as uuid4().hex but cheaper


def outgoing_metadata() -> list[tuple[str, str]]:
    """Metadata that forwards the current call's context to the next service."""
    metadata = []
    if rid := request_id.get():
        metadata.append((REQUEST_ID_KEY, rid))
    if tid := tenant.get():
        metadata.append((TENANT_KEY, tid))
    return metadata
