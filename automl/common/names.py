"""Resource names ("runs/<id>", "datasets/<id>", ...) and the ids inside them.

The gateway checks names at the door, storage parses them into ids, the
runner checks the names it is sent: all three use this module, so that a name
one of them accepts is one the others accept, and a refusal reads the same
whichever refused it.
"""

from __future__ import annotations

import re
import secrets

from automl.common.errors import FieldViolation, InvalidArgument

SERVER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""An id in a resource name: what storage makes (new_id) and what a client may choose (CLIENT_ID)."""
CLIENT_ID = re.compile(r"^[a-z][a-z0-9-]{2,61}[a-z0-9]$")
"""An id a client chooses (CreateExperiment's experiment_id): stricter, so it reads as a word."""
CLIENT_ID_RULE = (
    "use 4 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen"
)
QUOTED = 80
"""Characters of a bad value quoted in a message: an error must stay small whatever was sent."""


def new_id() -> str:
    """A random id: 16 hex characters (64 bits), unguessable enough for names."""
    return secrets.token_hex(8)


def problem(value: str, collection: str) -> str | None:
    """What is wrong with `value` as a name of `collection`, as its fix; None when it is one."""
    if not value:
        return f"required: a resource name like {collection}/abc123"
    prefix = f"{collection}/"
    if not value.startswith(prefix) or not SERVER_ID.match(value[len(prefix) :]):
        return f"{value[:QUOTED]!r} is not a resource name like {collection}/abc123"
    return None


def violations(value: str, collection: str, field: str = "name", required: bool = True) -> list[FieldViolation]:
    """The name's violation, if any (none for an empty name that is not `required`)."""
    if not value and not required:
        return []
    fix = problem(value, collection)
    return [FieldViolation(field, fix)] if fix else []


def check(value: str, collection: str, field: str = "name") -> str:
    """`value` itself when it is a name of `collection`; INVALID_ARGUMENT naming `field` otherwise."""
    fix = problem(value, collection)
    if fix:
        raise InvalidArgument.field(field, fix)
    return value


def parse(value: str, collection: str, field: str = "name") -> str:
    """The id in "{collection}/{id}"; INVALID_ARGUMENT naming `field` otherwise."""
    return check(value, collection, field)[len(collection) + 1 :]


def parse_optional(value: str, collection: str, field: str) -> str:
    """As parse, but "" for an empty name (an optional reference)."""
    return parse(value, collection, field) if value else ""


def client_id_violations(ident: str, field: str) -> list[FieldViolation]:
    if CLIENT_ID.match(ident):
        return []
    return [FieldViolation(field, f"{ident[:QUOTED]!r}: {CLIENT_ID_RULE}")]


def check_client_id(ident: str, field: str) -> None:
    if found := client_id_violations(ident, field):
        raise InvalidArgument.of(found)
