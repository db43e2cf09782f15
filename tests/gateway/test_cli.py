"""The `automl` command and the Python client, against the four services as
real processes: the whole story on a dataset (upload, experiment, run with a
stop condition watched live, leaderboard, train, test, predict, export),
--json output for scripts, exit codes and one-line errors, and a watch that
survives a gateway restart without missing an event."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import openpyxl
import pytest

from automl.v1 import common_pb2 as c
from automl_client import Client
from tests.conftest import ROOT
from tests.gateway.conftest import CRAFTED_NOTES, CRAFTED_REASON, crafted_run, start_gateway_suite, stop_gateway_suite
from tests.runner.conftest import shared_csv, sklearn_csv

AUTOML = Path(sys.executable).parent / "automl"


def automl(suite, *args: str, key: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "AUTOML_TARGET": suite.target, "COLUMNS": "160"}
    if (key := suite.api_key if key is None else key) != "":
        env["AUTOML_API_KEY"] = key
    return subprocess.run([str(AUTOML), *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd or ROOT)


def as_json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("dataset", ["iris", "glass.csv", "titanic.csv"])
def test_the_whole_story_from_the_command_line(gateway_suite, tmp_path, dataset):
    target = {"iris": "target", "glass.csv": "Type", "titanic.csv": "Survived"}[dataset]
    data = sklearn_csv("iris") if dataset == "iris" else shared_csv(dataset)
    source = tmp_path / (dataset if dataset.endswith(".csv") else f"{dataset}.csv")
    source.write_bytes(data)

    uploaded = automl(gateway_suite, "datasets", "upload", str(source))
    assert uploaded.returncode == 0, uploaded.stderr
    assert source.name in uploaded.stdout  # the table people read
    datasets = as_json(automl(gateway_suite, "--json", "datasets", "list"))
    name = next(d["name"] for d in datasets if d["displayName"] == source.name)
    preview = as_json(automl(gateway_suite, "--json", "datasets", "preview", name.split("/")[1], "--rows", "3"))
    assert len(preview["rows"]) == 3

    experiment = as_json(
        automl(gateway_suite, "--json", "experiments", "create", "--dataset", name, "--target", target)
    )
    watched = automl(
        gateway_suite,
        "--json",
        "runs",
        "start",
        "--experiment",
        experiment["name"],
        "--max-time",
        "2m",
        "--max-models",
        "4",
        "--watch",
    )
    run = as_json(watched)  # the final state of the run, one document
    assert run["state"] == "RUN_STATE_SUCCEEDED" and run["stopReason"] == "STOP_REASON_MAX_MODELS"

    board = as_json(automl(gateway_suite, "--json", "leaderboard", run["name"]))
    assert board["entries"][0]["modelResult"]["name"] == run["bestModelResult"]
    people = automl(gateway_suite, "leaderboard", run["name"])
    assert people.returncode == 0 and "±" in people.stdout

    model = as_json(automl(gateway_suite, "--json", "models", "train", run["bestModelResult"]))
    assert model["state"] == "STATE_READY"
    evaluation = as_json(automl(gateway_suite, "--json", "models", "test", model["name"]))
    assert evaluation["rowCount"] and evaluation["metrics"]
    if dataset == "iris":  # fitted with the holdout rows too: more rows, and no holdout test
        best = run["bestModelResult"]
        whole = as_json(automl(gateway_suite, "--json", "models", "train", best, "--include-holdout"))
        assert whole["includesHoldout"] and int(whole["trainingRows"]) == 150 > int(model["trainingRows"])
        refused = automl(gateway_suite, "models", "test", whole["name"])
        assert refused.returncode != 0 and "include_holdout" in refused.stderr

    rows = data.decode().splitlines()
    header = rows[0].split(",")
    keep = [i for i, column in enumerate(header) if column.strip('"') != target]
    new = tmp_path / "new.csv"
    new.write_text("\n".join(",".join(r.split(",")[i] for i in keep) for r in rows[:11]) + "\n")
    if dataset == "titanic.csv":  # quoted names hold commas: let pandas cut the columns
        import pandas as pd

        pd.read_csv(source).drop(columns=[target]).head(10).to_csv(new, index=False)
    predictions = tmp_path / "predictions.csv"
    predicted = automl(gateway_suite, "models", "predict", model["name"], str(new), "-o", str(predictions))
    assert predicted.returncode == 0, predicted.stderr
    with predictions.open() as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == 10 and written[0]["prediction"]

    exported = automl(gateway_suite, "runs", "export", run["name"], "--format", "xlsx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    workbook = next(tmp_path.glob("*results.xlsx"))
    assert "errors" in openpyxl.load_workbook(workbook, read_only=True).sheetnames


def test_live_view_for_people(gateway_suite):
    client = gateway_suite.client()
    experiment = client.experiment(sklearn_csv("breast_cancer"), "target")
    run = client.start(experiment, max_models=5)
    watched = automl(gateway_suite, "runs", "watch", run.name)
    assert watched.returncode == 0, watched.stderr
    assert "best models so far" in watched.stdout and "leaderboard, top 10" in watched.stdout
    assert "(max_models)" in watched.stdout  # the stop reason at the end


def table_rows(lines: list[str]) -> list[list[str]]:
    """The body rows of a rich table printed as text, cell by cell."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]


def test_runs_show_and_leaderboard_tell_what_the_search_did(gateway_suite):
    """A failed run says why, its notes and its counts (stopped candidates
    apart from failed ones); the leaderboard shows folds run against the
    experiment's, the rows of a candidate raced on a sample, an ensemble's members."""
    experiment = gateway_suite.client().experiment(sklearn_csv("iris"), "target")
    run = crafted_run(gateway_suite, experiment.name, tenant="alpha")
    shown = automl(gateway_suite, "runs", "show", run.name)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # rich wraps long lines
    assert f"failed: {CRAFTED_REASON}" in text
    assert "stop reason: error" in text
    assert "models: 3 evaluated, 1 failed, 2 stopped" in text
    for note in CRAFTED_NOTES:
        assert f"- {note}" in text
    as_document = as_json(automl(gateway_suite, "--json", "runs", "show", run.name))
    assert as_document["notes"] == CRAFTED_NOTES and as_document["modelsStopped"] == 2

    board = automl(gateway_suite, "leaderboard", run.name)
    assert board.returncode == 0, board.stderr
    lines = board.stdout.splitlines()
    header = [cell.strip() for cell in next(line for line in lines if "family" in line).split("┃")[1:-1]]
    rows = {cells[0]: dict(zip(header, cells, strict=True)) for cells in table_rows(lines)}
    ensemble, forest, boosted = rows["1"], rows["2"], rows["3"]
    assert ensemble["pipeline"] == "ensemble of #1 \u00d70.75, #2 \u00d70.25" and ensemble["folds"] == "5"
    assert (forest["folds"], forest["rows"]) == ("5", "")
    assert (boosted["folds"], boosted["rows"]) == ("3/5", "40")


def test_errors_are_one_line_with_meaningful_exit_codes(gateway_suite, tmp_path):
    missing = automl(gateway_suite, "runs", "show", "nope")
    assert missing.returncode == 3
    assert missing.stderr.strip() == "error: NOT_FOUND: runs/nope does not exist"
    denied = automl(gateway_suite, "datasets", "list", key="aml_wrong")
    assert denied.returncode == 4 and denied.stderr.count("\n") == 1 and "UNAUTHENTICATED" in denied.stderr
    unreachable = subprocess.run(
        [str(AUTOML), "--gateway", "127.0.0.1:1", "datasets", "list"], capture_output=True, text=True, timeout=60
    )
    assert unreachable.returncode == 5 and "is the gateway running?" in unreachable.stderr
    bad = automl(gateway_suite, "runs", "start", "--experiment", "x", "--max-time", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    invalid = automl(gateway_suite, "runs", "start", "--experiment", "experiments/BAD", "--workers", "99")
    assert invalid.returncode == 1 and invalid.stderr.startswith("error: INVALID_ARGUMENT")
    assert "parallel_workers" in invalid.stderr  # every violation, on the same line
    assert automl(gateway_suite, "datasets", "upload", str(tmp_path / "none.csv")).returncode == 2


@pytest.fixture(scope="module")
def restartable(tmp_path_factory):
    suite = start_gateway_suite(tmp_path_factory.mktemp("restart"))
    try:
        yield suite
    finally:
        stop_gateway_suite(suite)


def test_sdk_watch_survives_a_gateway_restart(restartable):
    """The gateway goes away mid-run and comes back: the iteration resumes from
    the last event delivered, with no gap and no duplicate."""
    client = restartable.client()
    experiment = client.experiment(sklearn_csv("breast_cancer"), "target")
    run = client.start(experiment, max_models=10)
    restarted = threading.Event()

    def restart() -> None:
        time.sleep(1.5)
        restartable.stack.stop("gateway")
        time.sleep(1.0)
        restartable.stack.start("gateway")
        restarted.set()

    with Client(target=restartable.target, api_key=restartable.api_key) as api:
        worker = threading.Thread(target=restart)
        worker.start()
        events = list(api.watch_events(run.name))
        worker.join()
        assert restarted.is_set()
        sequences = [e.sequence for e in events]
        assert sequences == list(range(1, len(sequences) + 1))
        assert events[-1].run_finished.stop_reason == c.STOP_REASON_MAX_MODELS
        assert api.get_run(run.name).state == c.RUN_STATE_SUCCEEDED  # retried reads work again
