"""The HTTP/JSON door, against the four services as real processes: every RPC
reachable from its proto rule, the same auth, tenants, validation and errors
as gRPC, cacheable GETs, streams (NDJSON and server-sent events, resumable),
raw uploads and downloads; the OpenAPI document fuzzed with schemathesis;
the README's curl walk-through run with real curl."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from automl.v1 import automl_service_pb2, model_pb2
from gateway.transcoding import Binding, bindings
from tests.conftest import ROOT
from tests.gateway.conftest import CREATES_OWN, LISTS, requests, start_gateway_suite, stop_gateway_suite
from tests.runner.conftest import sklearn_csv

SERVICE = automl_service_pb2.DESCRIPTOR.services_by_name["AutoML"]


def http(
    suite, method: str, path: str, body: bytes | None = None, key: str | None = None, headers: dict | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP call; (status, headers, body) whatever the status."""
    request = urllib.request.Request(f"{suite.http}{path}", data=body, method=method)
    if key is None:
        key = suite.keys["alpha"]
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def as_http(binding: Binding, message) -> tuple[str, str, bytes | None]:
    """(verb, path, body) of a gRPC request message under its HTTP rule."""
    path = binding.template
    for field in binding.variables.values():
        value = message
        for part in field.split("."):
            value = getattr(value, part)
        path = re.sub(r"\{" + re.escape(field) + r"(=[^}]*)?\}", value, path)
    payload = json_format.MessageToDict(message)
    if binding.kind in ("upload", "bidi_upload"):
        return binding.verb, path, b"a,b\n1,2\n"
    if binding.body == "*":
        return binding.verb, path, json.dumps(payload).encode()
    if binding.body:
        field = binding.method.input_type.fields_by_name[binding.body]
        body = payload.pop(field.json_name, {})
        query = {k: v for k, v in payload.items() if isinstance(v, (str, int, float, bool))}
        return binding.verb, f"{path}?{urllib.parse.urlencode(query)}", json.dumps(body).encode()
    query = {k: v for k, v in payload.items() if isinstance(v, (str, int, float, bool))}
    return binding.verb, f"{path}?{urllib.parse.urlencode(query)}" if query else path, None


def test_every_rpc_has_an_http_rule_and_an_openapi_operation():
    rules = {b.method.name for b in bindings(SERVICE)}
    assert rules == {m.name for m in SERVICE.methods}
    document = json.loads((ROOT / "gateway" / "openapi.json").read_text())
    operations = {op["operationId"] for ops in document["paths"].values() for op in ops.values()}
    assert {m.name for m in SERVICE.methods} <= operations


@pytest.mark.parametrize("method", sorted(m.name for m in SERVICE.methods if m.name not in LISTS | CREATES_OWN))
def test_another_tenant_gets_404_over_http(gateway_suite, owned, method):
    binding = next(b for b in bindings(SERVICE) if b.method.name == method)
    message = requests(owned)[method]
    if isinstance(message, list):  # a client stream: its header travels in the path and query
        message = message[0]
    verb, path, body = as_http(binding, message)
    status, _, answer = http(gateway_suite, verb, path, body, key=gateway_suite.keys["beta"])
    assert status == 404, (verb, path, answer[:300])
    assert json.loads(answer.splitlines()[0])["error"]["code"] == 5


def test_lists_over_http_show_only_the_callers_tenant(gateway_suite, owned):
    status, _, body = http(gateway_suite, "GET", "/v1/runs", key=gateway_suite.keys["beta"])
    assert status == 200 and json.loads(body)["runs"] == []
    status, _, body = http(gateway_suite, "GET", "/v1/runs")
    assert owned.run in [r["name"] for r in json.loads(body)["runs"]]


@pytest.mark.parametrize(("key", "message"), [("", "no API key"), ("aml_nope", "unknown API key")])
def test_unauthenticated_over_http(gateway_suite, key, message):
    status, headers, body = http(gateway_suite, "GET", "/v1/datasets", key=key)
    assert status == 401
    error = json.loads(body)["error"]
    assert error["code"] == 16 and message in error["message"]
    assert headers["x-request-id"]


def test_validation_errors_keep_their_field_violations(gateway_suite):
    status, _, body = http(gateway_suite, "POST", "/v1/runs:start", json.dumps({"parallelWorkers": 99}).encode())
    assert status == 400
    details = json.loads(body)["error"]["details"]
    violations = next(d["fieldViolations"] for d in details if d["@type"].endswith("BadRequest"))
    assert {v["field"] for v in violations} == {"experiment", "parallel_workers"}


def test_malformed_requests_are_400(gateway_suite):
    assert http(gateway_suite, "POST", "/v1/runs:start", b"{not json")[0] == 400
    assert http(gateway_suite, "GET", "/v1/datasets?pageSize=lots")[0] == 400
    assert http(gateway_suite, "GET", "/v1/datasets?no_such_field=1")[0] == 400
    assert http(gateway_suite, "GET", "/v1/nowhere")[0] == 404
    assert http(gateway_suite, "DELETE", "/v1/runs:start")[0] == 501


def test_gets_are_cacheable(gateway_suite, owned):
    status, headers, _ = http(gateway_suite, "GET", f"/v1/{owned.experiment}")
    assert status == 200 and headers["etag"]
    status, _, body = http(gateway_suite, "GET", f"/v1/{owned.experiment}", headers={"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""


def test_upload_with_options_and_download(gateway_suite):
    data = b"a;b;label\n" + b"".join(f"{i};{i % 7};{'x' if i % 2 else 'y'}\n".encode() for i in range(2000))
    status, _, body = http(
        gateway_suite, "PUT", "/v1/datasets:upload?display_name=semi%20colons&csv_options.delimiter=%3B", data
    )
    assert status == 200, body
    dataset = json.loads(body)
    assert dataset["rowCount"] == "2000" and dataset["csvOptions"]["delimiter"] == ";"
    status, headers, body = http(gateway_suite, "GET", f"/v1/{dataset['name']}:download")
    assert status == 200 and body == data
    assert headers["content-type"].startswith("text/csv")
    assert headers["content-disposition"] == 'attachment; filename="semi_colons.csv"'


def sse_events(body: bytes) -> tuple[list[int], list[dict]]:
    """(the ids, the events) of a server-sent-events stream of WatchRun."""
    ids, events = [], []
    for frame in body.decode().split("\n\n"):
        for line in frame.splitlines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("data: "):
                events += json.loads(line[6:]).get("batch", {}).get("events", [])
    return ids, events


def test_watch_as_server_sent_events_resumes_from_last_event_id(gateway_suite, owned):
    status, headers, body = http(
        gateway_suite, "GET", f"/v1/{owned.run}:watch?afterSequence=0", headers={"Accept": "text/event-stream"}
    )
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    ids, events = sse_events(body)
    sequences = [int(e["sequence"]) for e in events]
    assert sequences == list(range(1, len(events) + 1)) and ids[-1] == sequences[-1]
    middle = sequences[len(sequences) // 2]
    _, _, again = http(
        gateway_suite,
        "GET",
        f"/v1/{owned.run}:watch",
        headers={"Accept": "text/event-stream", "Last-Event-ID": str(middle)},
    )
    assert [int(e["sequence"]) for e in sse_events(again)[1]] == sequences[middle:]


def test_watch_as_json_lines(gateway_suite, owned):
    status, headers, body = http(gateway_suite, "GET", f"/v1/{owned.run}:watch?afterSequence=0")
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    messages = [json.loads(line) for line in body.decode().splitlines()]
    assert "snapshot" in messages[0]
    assert messages[-1]["batch"]["events"][-1]["type"] == "EVENT_TYPE_RUN_FINISHED"


def test_predict_stream_takes_a_csv_body(gateway_suite, owned):
    rows = b"sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n" + b"5.1,3.5,1.4,0.2\n" * 30
    status, _, body = http(gateway_suite, "POST", f"/v1/{owned.model}:predictStream", rows)
    assert status == 200, body
    blocks = [json.loads(line) for line in body.decode().splitlines()]
    assert sum(len(b["predictions"]) for b in blocks) == 30


def test_openapi_document_and_page_are_served(gateway_suite):
    status, headers, body = http(gateway_suite, "GET", "/openapi.json", key="")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["openapi"].startswith("3.")
    status, _, page = http(gateway_suite, "GET", "/docs", key="")
    assert status == 200 and b"/openapi.json" in page


def test_schemathesis_finds_no_server_error_and_no_broken_response(gateway_suite, owned, tmp_path):
    """Generated requests against every operation (bounded): never a 5xx, and
    every answer matches the document."""
    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(cli),
            "run",
            f"{gateway_suite.http}/openapi.json",
            "--url",
            gateway_suite.http,
            "-H",
            f"Authorization: Bearer {gateway_suite.keys['alpha']}",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "15",
            "--phases",
            "examples,fuzzing",
            "--exclude-path-regex",
            r":(watch|subscribe|predictStream|upload)$",
            "--request-timeout",
            "30",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def open_suite(tmp_path_factory):
    """The embedded single-user set-up of `make demo`: no API keys."""
    suite = start_gateway_suite(tmp_path_factory.mktemp("open"), {"AUTOML_AUTH": "none"})
    try:
        yield suite
    finally:
        stop_gateway_suite(suite)


def readme_walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- curl-walkthrough:begin -->\n```sh\n(.*?)```\n<!-- curl-walkthrough:end -->", text, re.S)
    assert block, "README.md lacks the curl walk-through markers"
    return block.group(1)


def test_readme_curl_walkthrough(open_suite, tmp_path):
    for tool in ("curl", "jq"):
        assert shutil.which(tool), f"{tool} is missing: scripts/install-system-deps.sh installs it"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "H": open_suite.http, "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    events = [json.loads(line) for line in lines if line.startswith('{"sequence"')]
    assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["end"] in ("STOP_REASON_MAX_MODELS", "STOP_REASON_TIME_BUDGET")
    assert any(re.match(r"1\. \w+ 0\.\d+", line) for line in lines)  # the leaderboard's first entry
    assert any('"metric":"METRIC_ACCURACY"' in line for line in lines)  # the holdout test
    assert any(line.startswith('{"label":"0"') for line in lines)  # setosa predicted
    assert lines[-1].endswith("results.xlsx") and (tmp_path / lines[-1].removeprefix("./")).stat().st_size > 0


def test_predict_records_over_http(open_suite):
    """Typed records in the JSON body, over the embedded set-up."""
    client = open_suite.client(key="")
    experiment = client.experiment(sklearn_csv("iris"), "target")
    run = client.wait_end(client.start(experiment, max_models=2))
    model = client.train(run.best_model_result)
    assert model.state == model_pb2.TrainedModel.STATE_READY
    body = {"records": {"rows": [{"petal length (cm)": 6.0}]}}
    status, _, answer = http(open_suite, "POST", f"/v1/{model.name}:predict", json.dumps(body).encode(), key="")
    assert status == 400
    assert "sepal length (cm)" in json.loads(answer)["error"]["message"]  # the missing columns are listed


def test_upload_whose_checksum_does_not_match_is_400_naming_the_field(gateway_suite):
    """The caller's expected checksum against the bytes it sent is its own
    input: 400 with the field (it was DATA_LOSS, HTTP 500; found by fuzzing)."""
    data = b"a,b\n1,2\n3,4\n"
    wrong = hashlib.sha256(data + b"x").hexdigest()
    status, _, body = http(
        gateway_suite, "POST", f"/v1/datasets:upload?displayName=checksum&expectedSha256={wrong}", data
    )
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["code"] == 3 and hashlib.sha256(data).hexdigest() in error["message"]
    violations = next(d["fieldViolations"] for d in error["details"] if d["@type"].endswith("BadRequest"))
    assert [v["field"] for v in violations] == ["header.expected_sha256"]
    right = hashlib.sha256(data).hexdigest()
    status, _, body = http(
        gateway_suite, "POST", f"/v1/datasets:upload?displayName=checksum&expectedSha256={right}", data
    )
    assert status == 200, body


def test_upload_with_a_ragged_first_row_is_400_naming_the_row(gateway_suite):
    """Was INTERNAL (HTTP 500): a ValueError of the profiler (found by fuzzing)."""
    for data, message in [
        (b"a,b\n1,2,3\n", "row 2 has 3 fields, expected 2 (as in the header)"),
        (b"a,b\n1\n2,3\n", "row 2 has 1 field, expected 2 (as in the header)"),
    ]:
        status, _, body = http(gateway_suite, "POST", "/v1/datasets:upload?displayName=ragged", data)
        assert status == 400, body
        assert json.loads(body)["error"]["message"] == message


def test_a_size_limit_is_413_and_a_quota_429(gateway_suite):
    """RESOURCE_EXHAUSTED is both: a file past a size limit (columns, bytes)
    carries an ErrorInfo TOO_LARGE, which the HTTP door answers 413; quotas
    and rates stay 429 (test_auth's failed key checks, the stream quota)."""
    header = ",".join(f"c{i}" for i in range(300)).encode()  # AUTOML_CSV_MAX_COLUMNS: 250
    status, _, body = http(
        gateway_suite, "POST", "/v1/datasets:upload?displayName=wide", header + b"\n" + b"1," * 299 + b"1\n"
    )
    assert status == 413, body
    error = json.loads(body)["error"]
    assert error["code"] == 8 and "AUTOML_CSV_MAX_COLUMNS" in error["message"]
    infos = [d for d in error["details"] if d["@type"].endswith("ErrorInfo")]
    assert infos == [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TOO_LARGE", "domain": "automl.v1"}
    ]


def test_grpcs_own_message_size_refusal_is_413_other_resource_exhausted_429():
    from gateway.transcoding import _error_response

    too_large = _error_response(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 4)", None, "r"
    )
    assert too_large.status_code == 413
    assert (
        _error_response(grpc.StatusCode.RESOURCE_EXHAUSTED, "tenant alpha has 8 open streams", None, "r").status_code
        == 429
    )
