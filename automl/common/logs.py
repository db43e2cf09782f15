"""Structured logging: one line per record, as key=value text or JSON, with
the service name and the current request id on every line."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from typing import Any, cast

from automl.common import context

# Attributes every LogRecord has (plus uvicorn's colour duplicate); the rest are our `extra=` fields.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}


class _Formatter(logging.Formatter):
    def __init__(self, service: str, as_json: bool) -> None:
        super().__init__()
        self.service = service
        self.as_json = as_json
        self._second = -1
        self._stamp = ""

    def _time(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:  # one strftime per second, not per line (a line per call)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        extra = {key: value for key, value in record.__dict__.items() if key not in _RESERVED}
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(record.created, record.levelname, record.name, record.getMessage(), extra, exc)

    def line(
        self, created: float, level: str, logger: str, msg: str, extra: dict[str, Any], exc: str | None = None
    ) -> str:
        """A record's line from its parts (access_line writes one without a LogRecord)."""
        fields: dict[str, Any] = {
            "time": self._time(created, (created - int(created)) * 1000),
            "level": level.lower(),
            "service": self.service,
            "logger": logger,
            "msg": msg,
        }
        if rid := context.request_id.get():
            fields["request_id"] = rid
        fields.update(extra)
        if exc:
            fields["exc"] = exc
        if self.as_json:
            return json.dumps(fields, default=str)
        return " ".join([f"{k}={_text(v)}" for k, v in fields.items()])


_QUOTED = re.compile(r'[ "=\n]')


def _text(value: Any) -> str:
    text = value if type(value) is str else str(value)
    return json.dumps(text) if (not text or _QUOTED.search(text)) else text


def configure(service: str, level: str = "INFO", fmt: str = "text") -> None:
    """Send every log record of the process to stderr in the suite's format.
    The records leave out what no line shows (the caller's file and line, the
    thread and process names): a record is made per call served."""
    global _handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(service, fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    _handler = handler
    root.setLevel(level.upper())
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the logging HOWTO's "Optimization": no findCaller


_handler: logging.StreamHandler[Any] | None = None
"""The handler configure() installed."""


def access_line(logger: logging.Logger, level: int, msg: str, extra: dict[str, Any]) -> None:
    """`logger.log(level, msg, extra=extra)` for the line every served call
    writes: when configure()'s handler alone would take the record, the line
    is formatted and written straight (the same line: _Formatter.line), without
    a LogRecord and the handler chain, which cost more than the line itself.
    Anything else (a test's capture, another handler, a filter) gets the record."""
    if not logger.isEnabledFor(level):
        return
    handler = _handler
    if handler is None or not _only_handler(logger, handler):
        logger.log(level, msg, extra=extra)
        return
    if level < handler.level:
        return
    formatter = cast(_Formatter, handler.formatter)
    line = formatter.line(time.time(), logging.getLevelName(level), logger.name, msg, extra)
    with handler.lock or contextlib.nullcontext():
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except Exception:  # noqa: BLE001 - as Handler.emit: a logging failure must not fail the call
            handler.handleError(logging.makeLogRecord({"msg": line}))


def _only_handler(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether `handler` (on the root logger) is the only one a record of
    `logger` reaches, with no filter on the way."""
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters:
            return False
        if node is logging.root:
            return node.handlers == [handler] and not handler.filters
        if node.handlers or not node.propagate:
            return False
        node = node.parent
    return False
