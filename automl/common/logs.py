"""Structured logging: one line per record, as key=value text or JSON, with
the service name and the current request id on every line."""

from __future__ import annotations

import json
import logging
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

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if rid := context.request_id.get():
            fields["request_id"] = rid
        fields.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(fields, default=str)
        return " ".join(f"{k}={_text(v)}" for k, v in fields.items())


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


def configure(service: str, level: str = "INFO", fmt: str = "text") -> None:
    """Send every log record of the process to stderr in the suite's format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(service, fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
