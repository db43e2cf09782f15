"""Structured logging: one line per record, as key=value text or JSON, with
the service name and the current request id on every line."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

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
        fields: dict[str, Any] = {
            "time": self._time(record.created, record.msecs),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if rid := context.request_id.get():
            fields["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RESERVED:
                fields[key] = value
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(service, fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the logging HOWTO's "Optimization": no findCaller
