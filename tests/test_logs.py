"""The access line every served call writes (automl.common.logs.access_line)
is the line a LogRecord through the suite's handler would make, in both
formats, and any other handler still gets a record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from automl.common import context, logs


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    logs._handler = None


def _configure(stream: io.StringIO, fmt: str) -> None:
    logs.configure("storage", "INFO", fmt)
    assert logs._handler is not None
    logs._handler.setStream(stream)


def _without_time(line: str, fmt: str) -> object:
    if fmt == "json":
        fields = json.loads(line)
        fields.pop("time")
        return fields
    return line.split(" ", 1)[1]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_access_line_is_the_records_line(configured: io.StringIO, fmt: str) -> None:
    _configure(configured, fmt)
    log = logging.getLogger("automl.rpc")
    fields = {"method": "/automl.v1.Storage/GetRun", "code": "OK", "ms": 0.12, "note": 'a "quoted" value'}
    token = context.request_id.set("r1")
    try:
        logs.access_line(log, logging.INFO, "rpc", fields)
        log.log(logging.INFO, "rpc", extra=fields)
        logs.access_line(log, logging.DEBUG, "rpc", fields)  # under the level: nothing
    finally:
        context.request_id.reset(token)
    fast, slow = configured.getvalue().splitlines()
    assert _without_time(fast, fmt) == _without_time(slow, fmt)
    assert fast.split(" ", 1)[0].startswith("time=20") if fmt == "text" else json.loads(fast)["time"].endswith("Z")


def test_another_handler_still_gets_a_record(configured: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    _configure(configured, "text")
    caplog.set_level(logging.INFO)
    logging.getLogger().addHandler(caplog.handler)
    logs.access_line(logging.getLogger("automl.rpc"), logging.WARNING, "rpc", {"code": "INTERNAL"})
    assert [(r.levelname, r.getMessage(), r.code) for r in caplog.records] == [("WARNING", "rpc", "INTERNAL")]  # type: ignore[attr-defined]
    assert "code=INTERNAL" in configured.getvalue()
