"""Event ids (automl.v1.Event.id): the idempotency keys of Publish, chosen
by the publisher so that a Publish retried after a lost answer stores
nothing twice."""

from __future__ import annotations

import re
import uuid

EVENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""What an id may be: 1 to 64 letters, digits, '-', '_' or '.'."""
EVENT_ID_RULE = "1 to 64 letters, digits, '-', '_' or '.' (e.g. a uuid4 in hex)"


def new_event_id() -> str:
    """A fresh id: a uuid4 in hex."""
    return uuid.uuid4().hex


def valid_event_id(event_id: str) -> bool:
    return EVENT_ID.fullmatch(event_id) is not None
