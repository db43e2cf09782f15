"""The `automl` command and the Python client, against the four services as
real processes: the whole story on a dataset (upload, experiment, run with a
stop condition watched live, leaderboard, train, test, predict, export),
--json output for scripts, exit codes and one-line errors, and a watch that
survives a gateway restart without missing an event."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pytest

from automl.v1 import common_pb2 as c
from automl_client import Client
from tests.conftest import ROOT
from tests.gateway.conftest import CRAFTED_NOTES, CRAFTED_REASON, crafted_run, start_gateway_suite, stop_gateway_suite
from tests.runner.conftest import shared_csv, sklearn_csv

AUTOML = Path(sys.executable).parent / "automl"


def automl(
    suite,
    *args: str,
    key: str | None = None,
    cwd: Path | None = None,
    columns: int | None = 160,
    target: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`automl ARGS` as a user runs it, its output captured (not a terminal):
    COLUMNS as given (None: unset), AUTOML_TARGET the suite's gateway unless
    `target`, AUTOML_API_KEY alpha's unless `key` ("": none)."""
    env = {"PATH": "/usr/bin:/bin", "AUTOML_TARGET": target or suite.target}
    if columns is not None:
        env["COLUMNS"] = str(columns)
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


# ------------------------------------------- a command line that fits the hand

UNREACHABLE = "127.0.0.1:1"
LONG_DATASET = "measurements of three iris species, sepals and petals, in centimetres.csv"
LONG_EXPERIMENT = "which species is it, from the four measurements alone (a first try)"
ID = re.compile(r"(?<![0-9a-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{6,}(?![0-9a-z])")
"""Something that looks like an id, or a piece of one (hex letters and digits)."""


def short(name: str) -> str:
    return name.split("/", 1)[-1]


@pytest.fixture(scope="module")
def named(gateway_suite, owned, tmp_path_factory) -> dict[str, str]:
    """Next to `owned` (a finished search and a trained model), a dataset and
    an experiment with names too long for 80 columns, one named by default
    (after its dataset's id), and a crafted run whose leaderboard has sampled
    rows and an ensemble: ids."""
    source = tmp_path_factory.mktemp("named") / "iris.csv"
    source.write_bytes(sklearn_csv("iris"))
    dataset = as_json(automl(gateway_suite, "datasets", "upload", str(source), "--name", LONG_DATASET, "--json"))
    experiment = as_json(
        automl(
            gateway_suite,
            *("experiments", "create", "--dataset", dataset["name"], "--target", "target"),
            *("--name", LONG_EXPERIMENT, "--json"),
        )
    )
    unnamed = automl(gateway_suite, "experiments", "create", "--dataset", short(dataset["name"]), "--target", "target")
    assert unnamed.returncode == 0, unnamed.stderr  # "target from <dataset id>": an id in a text, cut at 60 and 80
    crafted = crafted_run(gateway_suite, experiment["name"], tenant="alpha")
    return {
        "dataset": short(dataset["name"]),
        "experiment": short(experiment["name"]),
        "crafted": short(crafted.name),
        "run": short(owned.run),
        "model": short(owned.model),
    }


def test_global_options_go_before_or_after_the_command(gateway_suite, named):
    """--json anywhere on the line (before the command, between a group and
    its command, after the command or its arguments): the same document."""
    commands = [
        ["datasets", "list"],
        ["experiments", "show", named["experiment"]],
        ["runs", "list"],
        ["runs", "show", named["crafted"]],
        ["leaderboard", named["crafted"]],
        ["models", "list"],
    ]
    placements = {
        tuple(command): [(*command[:at], "--json", *command[at:]) for at in range(len(command) + 1)]
        for command in commands
    }
    lines = [line for group in placements.values() for line in group]
    with ThreadPoolExecutor(4) as pool:
        documents = dict(zip(lines, pool.map(lambda line: as_json(automl(gateway_suite, *line)), lines), strict=True))
    for group in placements.values():
        assert documents[group[0]], group[0]
        for line in group[1:]:
            assert documents[line] == documents[group[0]], line


def test_each_global_option_after_the_command(gateway_suite, named, tmp_path):
    """Each global option after the command, alone or given twice (the later
    wins); a command never puts a default back over one given before it."""
    reference = as_json(automl(gateway_suite, "--json", "datasets", "list"))
    real = gateway_suite.target
    after = automl(gateway_suite, "datasets", "list", "--gateway", real, "--json", target=UNREACHABLE)
    assert as_json(after) == reference
    before = automl(gateway_suite, "--gateway", real, "datasets", "list", "--json", target=UNREACHABLE)
    assert as_json(before) == reference  # not reset to the default (AUTOML_TARGET) by the command
    later = automl(gateway_suite, "--gateway", real, "datasets", "list", "--gateway", UNREACHABLE)
    assert later.returncode == 5 and "is the gateway running?" in later.stderr

    keyed = automl(gateway_suite, "datasets", "list", "--api-key", gateway_suite.api_key, "--json", key="")
    assert as_json(keyed) == reference
    wrong = automl(gateway_suite, "runs", "show", named["crafted"], "--api-key", "aml_wrong")
    assert wrong.returncode == 4 and "UNAUTHENTICATED" in wrong.stderr

    tls = automl(gateway_suite, "datasets", "list", "--tls")  # a TLS handshake with a plaintext gateway
    assert tls.returncode == 5 and "handshake" in tls.stderr.lower()
    missing = tmp_path / "none.pem"
    ca = automl(gateway_suite, "models", "list", "--ca-file", str(missing))
    assert ca.returncode == 2
    assert ca.stderr.strip() == f"error: {missing}: no such file (--ca-file / AUTOML_TLS_CA_FILE)"

    for line in (["runs", "list", "--help"], ["runs", "--help"], ["--help"]):
        helped = automl(gateway_suite, *line)
        assert helped.returncode == 0 and "global options (before or after the command):" in helped.stdout
        for option in ("--gateway GATEWAY", "--api-key API_KEY", "--tls", "--ca-file CA_FILE", "--json"):
            assert option in helped.stdout, (line, option)


def primary_ids(command: list[str], document: object) -> list[str]:
    """The ids a command's table is about, from its --json document."""
    if command[0] == "leaderboard":
        return [short(entry["modelResult"]["name"]) for entry in document["entries"]]
    if isinstance(document, list):
        return [short(item["name"]) for item in document]
    return [short(document["name"])] if "name" in document else []


def test_tables_fit_the_terminal_and_ids_stay_whole(gateway_suite, named):
    """At 60, 80 and 200 columns no line is wider than the terminal and every
    id is whole on one line (what looks like an id is one); names are
    shortened with an ellipsis, then columns left out, never the ids. Into a
    pipe (no COLUMNS), every column is whole however wide."""
    commands = [
        ["datasets", "list"],
        ["datasets", "show", named["dataset"]],
        ["datasets", "preview", named["dataset"], "--rows", "3"],
        ["experiments", "list"],
        ["experiments", "show", named["experiment"]],
        ["runs", "list"],
        ["runs", "show", named["crafted"]],
        ["leaderboard", named["crafted"]],
        ["leaderboard", named["run"]],
        ["models", "list"],
        ["models", "show", named["model"]],
        ["runs", "watch", named["run"]],
    ]
    widths: list[int | None] = [60, 80, 200, None]
    with ThreadPoolExecutor(4) as pool:
        documents = list(pool.map(lambda command: automl(gateway_suite, "--json", *command), commands))
        printed = dict(
            zip(
                [(i, width) for i in range(len(commands)) for width in widths],
                pool.map(
                    lambda job: automl(gateway_suite, *commands[job[0]], columns=job[1]),
                    [(i, width) for i in range(len(commands)) for width in widths],
                ),
                strict=True,
            )
        )
    known = {match for document in documents for match in ID.findall(document.stdout)}
    assert {named["dataset"], named["experiment"], named["crafted"], named["run"], named["model"]} <= known
    for (i, width), done in printed.items():
        command, where = commands[i], f"{' '.join(commands[i])} at {width or 'no'} COLUMNS"
        assert done.returncode == 0, (where, done.stderr)
        assert set(ID.findall(done.stdout)) <= known, (where, done.stdout)  # no id cut or wrapped
        for id in primary_ids(command, as_json(documents[i])):
            assert id in done.stdout, (where, id, done.stdout)
        if width is not None:
            too_long = [line for line in done.stdout.splitlines() if len(line) > width]
            assert not too_long, (where, done.stdout)
        if width in (200, None):  # room for everything: nothing shortened, nothing left out
            assert "…" not in done.stdout and "not shown" not in done.stdout, (where, done.stdout)

    listed = {width: printed[(0, width)].stdout for width in widths}
    assert LONG_DATASET in listed[200] and LONG_DATASET in listed[None]
    assert LONG_DATASET not in listed[80]
    for width in (60, 80):  # the long name shortened, with an ellipsis, on the dataset's row
        name = next(row[1] for row in table_rows(listed[width].splitlines()) if row[0] == named["dataset"])
        assert name.endswith("…") and len(name) >= 10 and LONG_DATASET.startswith(name[:-1]), name
    runs = {width: printed[(5, width)].stdout for width in widths}
    assert re.search(r"not shown at this width: [a-z ,]*created", " ".join(runs[60].split())), runs[60]
    unlimited = max(len(line) for line in runs[None].splitlines())
    assert unlimited > 100 and "created" in runs[None]  # the natural width, not 80
    board = printed[(7, 80)].stdout  # the crafted leaderboard: ranks, scores and result ids at least
    rows = table_rows(board.splitlines())
    assert [row[0] for row in rows] == ["1", "2", "3"] and all("±" in " ".join(row) for row in rows)


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
