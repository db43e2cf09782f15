"""Request plumbing of the storage domain: page tokens and filter expressions,
each refused with a message naming the field (resource names and ids:
automl.common.names)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from automl.common.errors import InvalidArgument

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Page",
    "Term",
    "enum_value",
    "next_token",
    "page",
    "parse_filter",
    "text_match",
]


@dataclass(frozen=True)
class Page:
    offset: int
    size: int


def page(page_size: int, page_token: str, scope: str, default: int = DEFAULT_PAGE_SIZE) -> Page:
    """Decode a page request. `scope` names what the token was issued for (the
    collection and filter), so a token cannot be replayed on another query."""
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise InvalidArgument.field("page_size", f"{page_size}: use 1 to {MAX_PAGE_SIZE} (0 for {default})")
    size = page_size or default
    if not page_token:
        return Page(0, size)
    try:
        data = json.loads(base64.urlsafe_b64decode(page_token.encode() + b"=" * (-len(page_token) % 4)))
        offset, digest = int(data["o"]), str(data["s"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.field(
            "page_token", "not a token this server issued: send next_page_token unchanged, or omit it"
        ) from None
    if digest != _digest(scope) or offset < 0:
        raise InvalidArgument.field("page_token", "issued for another query (filter or collection changed)")
    return Page(offset, size)


def next_token(current: Page, returned: int, total: int, scope: str) -> str:
    end = current.offset + returned
    if returned == 0 or end >= total:
        return ""
    raw = json.dumps({"o": end, "s": _digest(scope)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Term:
    key: str
    op: str  # "=" exact, ":" substring
    value: str


_TERM = re.compile(r'^\s*([a-z_]+)\s*([=:])\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*$')


def parse_filter(text: str, allowed: dict[str, str]) -> list[Term]:
    """Parse `key=value AND key:"text"`. `allowed` maps each key to the ops it takes."""
    if not text.strip():
        return []
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.match(part)
        if not match:
            raise InvalidArgument.field("filter", f'cannot read {part!r}: write key=value or key:"text", joined by AND')
        key, op, value = match.groups()
        if key not in allowed:
            raise InvalidArgument.field("filter", f"unknown key {key!r}: use {', '.join(sorted(allowed))}")
        if op not in allowed[key]:
            raise InvalidArgument.field("filter", f"{key} takes {' or '.join(allowed[key])}, not {op}")
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:  # a bad escape (\q, a raw control character): the caller's text, not our fault
                raise InvalidArgument.field(
                    "filter", f'cannot read the text of {key}: quote it as a JSON string, e.g. {key}:"name"'
                ) from None
            if not isinstance(value, str) or "\x00" in value:
                raise InvalidArgument.field("filter", f"the text of {key} must be a string without NUL characters")
        terms.append(Term(key, op, value))
    return terms


def enum_value(enum: EnumTypeWrapper, text: str) -> int:
    try:
        return enum.Value(text)
    except ValueError:
        raise InvalidArgument.field("filter", f"{text!r} is not one of {', '.join(enum.keys())}") from None


def text_match(column: Any, term: Term) -> Any:
    if term.op == "=":
        return column == term.value
    escaped = term.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%{escaped}%", escape="\\")
