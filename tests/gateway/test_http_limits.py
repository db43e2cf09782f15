"""Hostile input at the HTTP door and in exports, against the four services
as real processes: bodies over their cap (declared, streamed, lied about)
answer 413 before the key is checked and store nothing, deeply nested JSON
answers 400, any file name downloads, and exported cells a spreadsheet would
run as formulas are neutralised."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import openpyxl
import pytest

from automl.v1 import common_pb2, run_pb2, storage_service_pb2
from gateway.exports import FORMULA_START, neutralise
from gateway.transcoding import content_disposition
from tests.gateway.conftest import GatewaySuite, start_gateway_suite, stop_gateway_suite
from tests.gateway.test_http import http
from tests.runner.conftest import sklearn_csv

BODY_CAP = 1024 * 1024
UPLOAD_CAP = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewaySuite]:
    """A gateway with small caps, so that a test sends megabytes, not gigabytes."""
    limits = {"AUTOML_HTTP_MAX_BODY_BYTES": str(BODY_CAP), "AUTOML_HTTP_MAX_UPLOAD_BYTES": str(UPLOAD_CAP)}
    running = start_gateway_suite(tmp_path_factory.mktemp("limits"), limits)
    try:
        yield running
    finally:
        stop_gateway_suite(running)


def upload(suite: GatewaySuite, data: bytes, name: str) -> dict:
    query = urllib.parse.urlencode({"display_name": name})
    status, _, body = http(suite, "PUT", f"/v1/datasets:upload?{query}", data)
    assert status == 200, body
    return json.loads(body)


def names(suite: GatewaySuite, collection: str) -> list[str]:
    status, _, body = http(suite, "GET", f"/v1/{collection}?pageSize=1000")
    assert status == 200, body
    return [item["name"] for item in json.loads(body).get(collection, [])]


def blobs(suite: GatewaySuite) -> list[Path]:
    folder = Path(suite.env["AUTOML_DATA_DIR"]) / "blobs"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def raw_call(
    suite: GatewaySuite,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: object = None,
    chunked: bool = False,
    key: bool = True,
) -> tuple[int, dict]:
    """One call with http.client, which lets a test declare any length or
    send a chunked body: (status, the error body). Like requests, httpx and
    browsers (not urllib, which sends "Connection: close"), it keeps the
    connection alive, so the gateway drops the rest of a refused body unread
    and the client reads the 413 once it has sent it."""
    port = int(suite.env["AUTOML_HTTP_PORT"])
    connection = HTTPConnection("127.0.0.1", port, timeout=120)
    sent = {"Authorization": f"Bearer {suite.api_key}"} if key else {}
    try:
        connection.request(method, path, body=body, headers=sent | (headers or {}), encode_chunked=chunked)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        connection.close()


def raw_stream(suite: GatewaySuite, method: str, path: str, body: Iterator[bytes]) -> tuple[int, bytes]:
    """A chunked body to a streaming method: (status, the raw answer)."""
    connection = HTTPConnection("127.0.0.1", int(suite.env["AUTOML_HTTP_PORT"]), timeout=300)
    try:
        headers = {"Authorization": f"Bearer {suite.api_key}"}
        connection.request(method, path, body=body, headers=headers, encode_chunked=True)
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def pieces(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """`total` bytes of CSV rows in pieces: a body with no declared length."""
    yield b"a,b\n"
    row = b"1,2\n" * (size // 4)
    for _ in range(total // len(row)):
        yield row


def assert_too_large(status: int, error: dict, limit: int) -> None:
    assert status == 413, error
    assert error["error"]["code"] == 8  # RESOURCE_EXHAUSTED, in the door's error shape
    assert f"limit of {limit} bytes" in error["error"]["message"]


# ------------------------------------------------------------------- depth


def test_deeply_nested_json_is_400_not_500(suite):
    for depth in (10_000, 100):  # past Python's recursion limit, and past the cap only
        body = '{"experiment": ' + "[" * depth + "]" * depth + "}"
        status, _, answer = http(suite, "POST", "/v1/runs:start", body.encode())
        assert status == 400, answer[:300]
        assert "deeper than 64 levels" in json.loads(answer)["error"]["message"]


def test_json_at_the_depth_cap_goes_through_to_the_schema_check(suite):
    body = '{"experiment": ' + "[" * 63 + "]" * 63 + "}"  # 64 levels, the object included
    status, _, answer = http(suite, "POST", "/v1/runs:start", body.encode())
    assert status == 400, answer
    assert "does not fit its schema" in json.loads(answer)["error"]["message"]


# ------------------------------------------------------------------- bodies


def test_a_10_mb_body_is_413_before_the_key_and_stores_nothing(suite):
    dataset = upload(suite, b"x,target\n1,a\n2,b\n", "small")
    before = names(suite, "experiments")
    experiment = {"displayName": "big", "dataset": dataset["name"], "targetColumn": "target", "description": "d"}
    body = json.dumps(experiment).replace('"d"', '"' + "d" * 10_000_000 + '"').encode()
    for key in (True, False):  # with a valid key, and with none at all (not 401: the key is never checked)
        status, error = raw_call(suite, "POST", "/v1/experiments", body=body, key=key)
        assert_too_large(status, error, BODY_CAP)
    assert names(suite, "experiments") == before


def test_a_declared_length_over_the_cap_is_refused_before_a_byte_is_read(suite):
    # The client claims a terabyte and sends nothing: the answer cannot wait for the body.
    status, error = raw_call(suite, "POST", "/v1/runs:start", {"Content-Length": str(10**12)})
    assert_too_large(status, error, BODY_CAP)
    status, error = raw_call(suite, "PUT", "/v1/datasets:upload?display_name=x", {"Content-Length": str(10**12)})
    assert_too_large(status, error, UPLOAD_CAP)


def test_a_chunked_body_past_the_cap_is_413(suite):
    before = names(suite, "subscriptions")
    status, error = raw_call(suite, "POST", "/v1/subscriptions", body=pieces(3 * BODY_CAP), chunked=True)
    assert_too_large(status, error, BODY_CAP)
    assert names(suite, "subscriptions") == before


def test_an_upload_past_its_cap_is_413_and_leaves_no_dataset_or_blob(suite):
    upload(suite, b"warm,up\n" + b"1,2\n" * 100_000, "blob warm-up")  # the blob folder exists
    datasets, stored = names(suite, "datasets"), blobs(suite)
    # Declared: refused at once. Streamed: refused when it passes the cap, the call cancelled.
    path = "/v1/datasets:upload?display_name=big"
    status, error = raw_call(suite, "PUT", path, body=b"a,b\n" + b"1,2\n" * UPLOAD_CAP)
    assert_too_large(status, error, UPLOAD_CAP)
    status, error = raw_call(suite, "PUT", path, body=pieces(3 * UPLOAD_CAP), chunked=True)
    assert_too_large(status, error, UPLOAD_CAP)
    assert names(suite, "datasets") == datasets
    # Storage learns of the cancelled call after the door has answered: its temporary file goes a moment later.
    deadline = time.monotonic() + 10
    while blobs(suite) != stored and time.monotonic() < deadline:
        time.sleep(0.05)
    assert blobs(suite) == stored


@pytest.fixture(scope="module")
def model(suite) -> str:
    client = suite.client()
    experiment = client.experiment(sklearn_csv("iris"), "target")
    run = client.wait_end(client.start(experiment, max_models=1))
    return client.train(run.best_model_result).name


IRIS_HEADER = b"sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n"
IRIS_ROWS = b"5.1,3.5,1.4,0.2\n" * 4096  # 64 KiB


def test_a_prediction_stream_past_the_upload_cap_is_413(suite, model):
    # predictStream answers once its CSV body is complete: the cap ends the call first.
    rows = (IRIS_HEADER if i == 0 else IRIS_ROWS for i in range(3 * UPLOAD_CAP // len(IRIS_ROWS)))
    status, body = raw_stream(suite, "POST", f"/v1/{model}:predictStream", rows)
    assert_too_large(status, json.loads(body), UPLOAD_CAP)


def test_an_upload_over_the_json_cap_but_under_its_own_still_works(suite):
    data = b"a,b\n" + b"1,2\n" * (3 * BODY_CAP // 8)  # 1.5 MiB: over the JSON cap, under the upload cap
    dataset = upload(suite, data, "between the caps")
    assert dataset["rowCount"] == str(3 * BODY_CAP // 8)


# ---------------------------------------------------------------- downloads


def test_download_of_a_non_ascii_name(suite):
    data = b"x,target\n1,a\n"
    dataset = upload(suite, data, "数据.csv")
    status, headers, body = http(suite, "GET", f"/v1/{dataset['name']}:download")
    assert status == 200 and body == data
    assert headers["content-disposition"] == "attachment; filename=\"__.csv\"; filename*=UTF-8''%E6%95%B0%E6%8D%AE.csv"


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("plain-name_1.csv", 'attachment; filename="plain-name_1.csv"'),
        ("café.csv", "attachment; filename=\"caf_.csv\"; filename*=UTF-8''caf%C3%A9.csv"),
        ('a"b\\c.csv', "attachment; filename=\"a_b_c.csv\"; filename*=UTF-8''a%22b%5Cc.csv"),
        (
            "x\r\nSet-Cookie: y.csv",
            "attachment; filename=\"x__Set-Cookie: y.csv\"; filename*=UTF-8''x%0D%0ASet-Cookie%3A%20y.csv",
        ),
    ],
)
def test_content_disposition_for_any_name(name, header):
    assert content_disposition(name) == header
    assert content_disposition(name).encode("ascii")  # sendable as a header
    star = header.partition("filename*=UTF-8''")[2]
    assert not star or urllib.parse.unquote(star) == name


# ------------------------------------------------------------------ exports

EVIL = {
    "family": '=HYPERLINK("http://example.invalid","x")',
    "step": "-2+3",
    "error": "@SUM(1)",
    "class": "=Evil",
    "fold": "+fold",
}


def crafted_results(suite: GatewaySuite, experiment: str) -> str:
    """A run of tenant alpha whose results carry text that spreadsheets
    would run (model family, steps, error, hyper-parameter names and values,
    fold columns) and negative numbers, written through storage as a runner
    would."""
    storage, tenant = suite.stack.storage, [("x-automl-tenant", "alpha")]
    R = run_pb2.ModelResult
    run = storage.CreateRun(
        storage_service_pb2.CreateRunRequest(
            run=run_pb2.Run(experiment=experiment, stop_conditions=common_pb2.StopConditions(max_models=2))
        ),
        metadata=tenant,
    )
    storage.UpdateRunState(
        storage_service_pb2.UpdateRunStateRequest(
            name=run.name,
            expected_states=[common_pb2.RUN_STATE_PENDING],
            state=common_pb2.RUN_STATE_RUNNING,
            runner_id="crafted",
        ),
        metadata=tenant,
    )
    # aikit's description: a (class name, parameters) tuple in its JSON encoding.
    params = {"+p": "-1+2", "@q": -3.5, "r": "\tcmd", "s": "\rcmd", "t": "plain"}
    model_json = json.dumps({"__type__": "__tuple__", "__items__": [EVIL["class"], params]})
    scored = R(
        outcome=R.OUTCOME_SUCCEEDED,
        model_family=EVIL["family"],
        pipeline_steps=[EVIL["step"]],
        model_json=model_json,
        primary_score=-0.25,
        metrics=[common_pb2.MetricSummary(metric=run.primary_metric, mean=-0.25, std=0.01)],
        folds=[run_pb2.FoldScores(fold_nb=0, values={EVIL["fold"]: -1.5, "test_x": 0.5})],
        folds_run=1,
    )
    failed = R(outcome=R.OUTCOME_FAILED, model_family=EVIL["family"], error_message=EVIL["error"])
    storage.BatchCreateModelResults(
        storage_service_pb2.BatchCreateModelResultsRequest(run=run.name, model_results=[scored, failed]),
        metadata=tenant,
    )
    return run.name


@pytest.fixture(scope="module")
def evil_run(suite) -> str:
    """The crafted run, of an experiment on a dataset whose names and values
    would be formulas too (a download returns that file as it was uploaded)."""
    dataset = upload(suite, b"=A,+B,-C,@D,target\n=1+2,+3,-4,@SUM(1),x\n=1,+3,-5,@x,y\n", "=cmd")
    experiment = {"displayName": "=evil", "dataset": dataset["name"], "targetColumn": "target"}
    status, _, body = http(suite, "POST", "/v1/experiments", json.dumps(experiment).encode())
    assert status == 200, body
    return crafted_results(suite, json.loads(body)["name"])


def export(suite: GatewaySuite, run: str, fmt: str) -> bytes:
    status, _, body = http(suite, "GET", f"/v1/{run}:export?format={fmt}")
    assert status == 200, body[:300]
    return body


def test_csv_export_neutralises_formulas_and_keeps_numbers(suite, evil_run):
    rows = list(csv.reader(io.StringIO(export(suite, evil_run, "EXPORT_FORMAT_CSV").decode())))
    header, cells = rows[0], [c for r in rows for c in r]
    for cell in cells:
        if cell.startswith("-"):
            float(cell)  # a number written as a number: no prefix, and still a number
        else:
            assert not cell.startswith(FORMULA_START), cell
    assert {"'=Evil__+p", "'=Evil__@q", "'=Evil__r"} <= set(header)
    table = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    assert table[0]["model_family"] == "'" + EVIL["family"]
    assert table[0]["pipeline_steps"] == "'-2+3"
    assert (table[0]["'=Evil__+p"], table[0]["'=Evil__@q"]) == ("'-1+2", "-3.5")
    assert (table[0]["'=Evil__r"], table[0]["'=Evil__s"]) == ("'\tcmd", "'\rcmd")
    assert table[0]["primary_score"] == "-0.25"
    assert table[1]["error_message"] == "'@SUM(1)"


def test_xlsx_export_has_no_formula_and_keeps_numbers(suite, evil_run):
    book = openpyxl.load_workbook(io.BytesIO(export(suite, evil_run, "EXPORT_FORMAT_XLSX")))
    for sheet in book.worksheets:
        for cell in (c for row in sheet.iter_rows() for c in row):
            assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
            assert not (isinstance(cell.value, str) and cell.value.startswith(FORMULA_START)), cell.value
    results = [list(r) for r in book["results"].iter_rows(values_only=True)]
    table = dict(zip(results[0], results[1], strict=True))
    assert table["model_family"] == "'" + EVIL["family"]
    assert (table["'=Evil__+p"], table["'=Evil__@q"], table["primary_score"]) == ("'-1+2", -3.5, -0.25)
    folds = [list(r) for r in book["folds"].iter_rows(values_only=True)]
    assert "'+fold" in folds[0]
    assert folds[1][folds[0].index("'+fold")] == -1.5
    errors = [list(r) for r in book["errors"].iter_rows(values_only=True)]
    assert errors[1][errors[0].index("error_message")] == "'@SUM(1)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1+2", "'-1+2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=b", "a=b"),
        ("", ""),
        (-1, -1),
        (-1.5, -1.5),
        (True, True),
        (None, None),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected
