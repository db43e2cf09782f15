"""Search quality: our run's winner on a holdout against what a user would pick instead.

    .venv/bin/python bench/quality.py --setup                 # make bench/.venv-anchors (FLAML, AutoGluon) once
    .venv/bin/python bench/quality.py                         # all 7 tables, 60 s each, every anchor
    .venv/bin/python bench/quality.py --tables iris,auto-mpg --budget 20 --json /tmp/quality.json
    .venv/bin/python bench/quality.py --tables glass --skip-anchors
    .venv/bin/python bench/quality.py --anchors rf,hgb,flaml    # a subset of the anchors

For each table (the shared datasets glass, titanic, auto-mpg, churn_modelling; scikit-learn's bundled iris,
digits, diabetes written to CSV first), the protocol of /work/shared/notes/anchors.md: the CSV read with
pandas defaults, every column kept, one split `train_test_split(test_size=0.25, random_state=0)`,
stratified on the target for classification. Then, one after the other (2 cores: nothing runs beside the
search):

1. ours, through the public API only (the gateway of a suite started here as four real processes on
   loopback, embedded defaults: SQLite and a blob folder in a temporary folder, AUTOML_AUTH=none): the TRAIN
   part uploaded as a dataset, an experiment with the target and nothing else, a run with a time budget of
   --budget seconds and otherwise default settings; then the run's best model result (whatever the run
   names best, an ensemble entry too) trained with include_holdout (TrainModel, polled until READY: fitted
   on every uploaded row, as the anchors are; the suite's internal holdout, 20 % of the train part, is left
   out of the search only), the HOLDOUT rows sent to Predict as CSV (target column left out), and the
   answers scored here with scikit-learn: accuracy for classification, R2 for regression, and ROC AUC for
   binary targets when probabilities come back. The external holdout is never uploaded.
2. the anchors, each a subprocess of bench/.venv-anchors/bin/python bench/anchors.py (a venv of their own,
   pins in bench/anchors-requirements.txt, never the suite's dependencies; made by --setup, or on the first
   run that needs it): rf (RandomForest 100 trees, random_state 0, median / constant imputation + one-hot),
   hgb (HistGradientBoosting defaults, native categoricals), flaml (FLAML 2.7.0, time_budget=--budget,
   seed 0, n_jobs 2), ag and ag_best (AutoGluon-Tabular 1.6.3, time_limit=--budget, num_cpus 2, the
   default preset and presets="best_quality"), on the same split files.

Printed: a table of the holdout score of every system; a table of our run (state, models evaluated, failed
and stopped candidates, duration from the RUN_STARTED to the RUN_FINISHED event against the budget, the
winner); the goals per table, PASS or FAIL:

- our run SUCCEEDED;
- our holdout score >= the best anchor's - 0.01, and >= max(RF, HGB) (only anchors that gave a score);
- its duration <= budget * 1.05 + 1 s.

A run the suite refuses or fails is reported with its state and status message, not a crash. --json
writes every figure, the run's notes and the anchors' errors. A full run (7 tables, every anchor, 60 s)
takes about 7 x (60 s ours + 3 x 60 s FLAML and AutoGluon's two presets + RF, HGB, training and start-ups)
= 25 to 35 minutes, plus the anchors' venv once (about 1.5 GB, a minute). The anchors run one after the
other and never beside our run (2 cores); they are not deterministic under a time budget (FLAML, AutoGluon
differ by a few hundredths from one run to the next on these small holdouts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from automl.common import health  # noqa: E402
from automl.v1 import common_pb2, event_pb2, model_pb2, run_pb2  # noqa: E402
from automl_client.client import Client, Connection  # noqa: E402

BENCH = ROOT / "bench"
VENV = BENCH / ".venv-anchors"
REQUIREMENTS = BENCH / "anchors-requirements.txt"
STAMP = VENV / "requirements.sha256"
ANCHOR_SCRIPT = BENCH / "anchors.py"
SHARED = ROOT.parent / "shared" / "datasets"
ANCHORS = ("rf", "hgb", "flaml", "ag", "ag_best")
ANCHOR_TITLES = {"rf": "RF", "hgb": "HGB", "flaml": "FLAML", "ag": "AG", "ag_best": "AG best"}
TOLERANCE = 0.01  # ours may trail the best anchor by this much


@dataclass(frozen=True)
class Table:
    name: str
    target: str
    task: str  # "classification" or "regression", as the anchors are told
    source: str  # a file of the shared datasets, or "sklearn:<name>"


TABLES = {
    t.name: t
    for t in (
        Table("glass", "Type", "classification", "glass.csv"),
        Table("titanic", "Survived", "classification", "titanic.csv"),
        Table("auto-mpg", "mpg", "regression", "auto-mpg.csv"),
        Table("churn_modelling", "Exited", "classification", "churn_modelling.csv"),
        Table("iris", "target", "classification", "sklearn:iris"),
        Table("digits", "target", "classification", "sklearn:digits"),
        Table("diabetes", "target", "regression", "sklearn:diabetes"),
    )
}


# ------------------------------------------------------------------ the anchors' venv


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def anchors_ready() -> bool:
    return (VENV / "bin" / "python").exists() and STAMP.exists() and STAMP.read_text().strip() == requirements_digest()


def setup_anchors() -> None:
    """Make bench/.venv-anchors and install bench/anchors-requirements.txt into it; nothing when the
    venv was made from the same requirements file already (make-like)."""
    if anchors_ready():
        print(f"{VENV.relative_to(ROOT)} is up to date with {REQUIREMENTS.name}", flush=True)
        return
    python = VENV / "bin" / "python"
    started = time.monotonic()
    if not python.exists():
        print(f"creating {VENV.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    STAMP.unlink(missing_ok=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    print(f"installing {REQUIREMENTS.relative_to(ROOT)} (FLAML, AutoGluon-Tabular; about 1.5 GB)", flush=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(requirements_digest() + "\n")
    print(f"anchors' venv ready in {time.monotonic() - started:.0f} s", flush=True)


def run_anchor(anchor: str, table: Table, train: Path, holdout: Path, budget: float) -> dict[str, Any]:
    timeout = 900 if anchor in ("rf", "hgb") else budget * 3 + 600
    command = [
        str(VENV / "bin" / "python"),
        str(ANCHOR_SCRIPT),
        "--train",
        str(train),
        "--holdout",
        str(holdout),
        "--target",
        table.target,
        "--task",
        table.task,
        "--anchor",
        anchor,
        "--budget",
        str(budget),
    ]
    started = time.monotonic()
    log = holdout.parent / f"anchor-{anchor}.log"
    try:
        with log.open("wb") as err:
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=err, timeout=timeout, cwd=holdout.parent)
    except subprocess.TimeoutExpired:
        return {"anchor": anchor, "error": f"no answer within {timeout:.0f} s", "wall_seconds": timeout}
    wall = round(time.monotonic() - started, 2)
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        out = {"anchor": anchor, "error": f"exit {done.returncode}, no JSON: {tail[0][:300]}"}
    out["wall_seconds"] = wall
    return out


# ------------------------------------------------------------------ the suite


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVICES = (  # start order: what a service calls starts before it
    ("storage", "services.storage", "automl.v1.Storage", "AUTOML_STORAGE_PORT"),
    ("notifier", "services.notifier", "automl.v1.Notifier", "AUTOML_NOTIFIER_PORT"),
    ("runner", "services.runner", "automl.v1.Runner", "AUTOML_RUNNER_PORT"),
    ("gateway", "gateway", "automl.v1.AutoML", "AUTOML_GATEWAY_PORT"),
)


@dataclass
class Suite:
    """The four services as real processes (`python -m ...`) on free loopback ports, with the embedded
    defaults (SQLite and a blob folder under `folder`) and no API keys (AUTOML_AUTH=none)."""

    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> Suite:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")}
        self.env.update({var: str(free_port()) for *_, var in SERVICES})
        self.env.update(
            AUTOML_HTTP_PORT=str(free_port()), AUTOML_DATA_DIR=str(self.folder / "data"), AUTOML_AUTH="none"
        )
        for name, module, service, var in SERVICES:
            log = self.folder / f"{name}.log"
            with log.open("ab") as out:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", module], cwd=ROOT, env=self.env, stdout=out, stderr=out
                )
            deadline = time.monotonic() + 90
            while health.check(f"127.0.0.1:{self.env[var]}", service, 1.0) != "SERVING":
                if self.procs[name].poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise SystemExit(f"{name} did not start (see {log}):\n{tail}")
                time.sleep(0.2)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.env['AUTOML_GATEWAY_PORT']}"

    def stop(self) -> None:
        for name in ("gateway", "runner", "notifier", "storage"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ------------------------------------------------------------------ data


def read_table(table: Table, folder: Path) -> pd.DataFrame:
    """The table as pandas reads its CSV with defaults (a bundled set is written to CSV first)."""
    if table.source.startswith("sklearn:"):
        import sklearn.datasets

        frame = getattr(sklearn.datasets, f"load_{table.source.split(':', 1)[1]}")(as_frame=True).frame
        path = folder / f"{table.name}.csv"
        frame.to_csv(path, index=False)
    else:
        path = SHARED / table.source
        if not path.exists():
            raise SystemExit(f"{path} not found: the shared datasets are only on the development machines")
    return pd.read_csv(path)


def split(table: Table, folder: Path) -> tuple[Path, Path, pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    frame = read_table(table, folder)
    stratify = frame[table.target] if table.task == "classification" else None
    train, holdout = train_test_split(frame, test_size=0.25, random_state=0, stratify=stratify)
    paths = folder / f"{table.name}-train.csv", folder / f"{table.name}-holdout.csv"
    train.to_csv(paths[0], index=False)
    holdout.to_csv(paths[1], index=False)
    # What every system reads: the files, with pandas defaults.
    return paths[0], paths[1], pd.read_csv(paths[0]), pd.read_csv(paths[1])


def label_key(value: object) -> str:
    """A class label as text, so that 1, 1.0, "1" (pandas, the suite's strings) compare equal."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return repr(number)


# ------------------------------------------------------------------ our run


@dataclass
class Ours:
    state: str = ""
    status_message: str = ""
    stop_reason: str = ""
    start_error: str = ""
    run: str = ""
    resolved_task: str = ""
    primary_metric: str = ""
    models_evaluated: int | None = None
    models_failed: int | None = None
    models_stopped: int | None = None
    duration_seconds: float | None = None  # RUN_STARTED to RUN_FINISHED (events), else start_time to end_time
    duration_source: str = ""
    run_finished_duration: float | None = None  # RunFinished.duration, as the runner measured it
    run_span_seconds: float | None = None  # Run.start_time to Run.end_time
    wall_seconds: float | None = None  # StartRun call to the terminal state seen here
    best_model_result: str = ""
    best_family: str = ""
    best_job_type: str = ""
    best_cv_score: float | None = None
    ensemble_members: int = 0
    model_state: str = ""
    model_error: str = ""
    train_seconds: float | None = None
    predict_seconds: float | None = None
    score: float | None = None
    roc_auc: float | None = None
    notes: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # "OUTCOME: first line of the error" -> candidates


def _field(message: Any, name: str) -> Any:
    """A field that other engineers' work may add or remove: None when the stubs lack it."""
    return getattr(message, name) if name in message.DESCRIPTOR.fields_by_name else None


def _error(exc: grpc.RpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]


def _events(client: Client, run: str) -> list[event_pb2.Event]:
    """Every event of an ended run (WatchRun replays them and ends after RUN_FINISHED; bounded here, in
    case a run ended without one)."""
    request = event_pb2.WatchRunRequest(name=run, after_sequence=0)
    events: list[event_pb2.Event] = []
    stream = client.stub.WatchRun(request, metadata=client.metadata, timeout=30)
    try:
        for message in stream:
            if message.WhichOneof("content") == "batch":
                events.extend(message.batch.events)
                if any(e.type == event_pb2.EVENT_TYPE_RUN_FINISHED for e in message.batch.events):
                    break
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
            raise
    finally:
        stream.cancel()
    return events


def run_ours(client: Client, table: Table, train: Path, holdout: pd.DataFrame, y_train: pd.Series, budget: float):
    ours = Ours()
    try:
        dataset = client.upload_dataset(train, display_name=f"{table.name} train (75 %)")
        experiment = client.create_experiment(dataset.name, target=table.target, display_name=f"quality {table.name}")
    except grpc.RpcError as exc:  # refused before any run exists
        ours.state, ours.status_message = "REFUSED", f"no experiment: {_error(exc)}"
        return ours
    ours.resolved_task = common_pb2.Task.Name(experiment.resolved_task)
    started = time.monotonic()
    try:
        run = client.start_run(experiment.name, max_time=budget)
    except grpc.RpcError as exc:
        ours.start_error = _error(exc)
        runs = list(client.list_runs(experiment=experiment.name))
        if not runs:
            ours.state = "NOT CREATED"
            ours.status_message = ours.start_error
            return ours
        run = runs[0]
    ours.run = run.name
    run = client.wait_run(run.name, poll=0.5, timeout=budget * 3 + 600)
    ours.wall_seconds = round(time.monotonic() - started, 2)
    ours.state = common_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_")
    ours.status_message = run.status_message
    ours.stop_reason = common_pb2.StopReason.Name(run.stop_reason).removeprefix("STOP_REASON_")
    ours.primary_metric = common_pb2.Metric.Name(run.primary_metric)
    ours.models_evaluated = run.models_evaluated
    ours.models_failed = run.models_failed
    ours.models_stopped = _field(run, "models_stopped")
    ours.notes = list(_field(run, "notes") or [])

    events = _events(client, run.name)
    first = {e.type: e for e in reversed(events)}  # the first event of each type
    if event_pb2.EVENT_TYPE_RUN_STARTED in first and event_pb2.EVENT_TYPE_RUN_FINISHED in first:
        begin = first[event_pb2.EVENT_TYPE_RUN_STARTED].create_time.ToNanoseconds()
        end = first[event_pb2.EVENT_TYPE_RUN_FINISHED].create_time.ToNanoseconds()
        ours.duration_seconds, ours.duration_source = round((end - begin) / 1e9, 2), "events"
    if run.HasField("start_time") and run.HasField("end_time"):
        span = run.end_time.ToNanoseconds() - run.start_time.ToNanoseconds()
        ours.run_span_seconds = round(span / 1e9, 2)
        if ours.duration_seconds is None:
            ours.duration_seconds, ours.duration_source = ours.run_span_seconds, "run start/end time"
    finished = first.get(event_pb2.EVENT_TYPE_RUN_FINISHED)
    if finished is not None and finished.run_finished.HasField("duration"):
        ours.run_finished_duration = round(finished.run_finished.duration.ToNanoseconds() / 1e9, 2)

    for result in client.list_model_results(run.name):
        if result.outcome not in (run_pb2.ModelResult.OUTCOME_SUCCEEDED, run_pb2.ModelResult.OUTCOME_INTERRUPTED):
            outcome = run_pb2.ModelResult.Outcome.Name(result.outcome).removeprefix("OUTCOME_")
            reason = f"{outcome}: {' '.join(result.error_message.split())[:200]}"
            ours.failures[reason] = ours.failures.get(reason, 0) + 1
    ours.failures = dict(sorted(ours.failures.items(), key=lambda item: -item[1]))

    if not run.best_model_result:
        return ours
    ours.best_model_result = run.best_model_result
    best = client.get_model_result(run.best_model_result)
    ours.best_family = best.model_family
    ours.best_job_type = _field(best, "job_type") or ""
    ours.ensemble_members = len(_field(best, "ensemble_members") or [])
    ours.best_cv_score = run.best_score if run.HasField("best_score") else None
    try:
        began = time.monotonic()
        # Fitted on every row uploaded, as the anchors are (the suite's own holdout has no use here).
        model = client.train_model(run.best_model_result, timeout=3600, include_holdout=True)
        ours.train_seconds = round(time.monotonic() - began, 2)
        ours.model_state = model_pb2.TrainedModel.State.Name(model.state).removeprefix("STATE_")
        ours.model_error = model.error_message
        if model.state != model_pb2.TrainedModel.STATE_READY:
            return ours
        features = holdout.drop(columns=[table.target]).to_csv(index=False).encode()
        began = time.monotonic()
        answer = client.stub.Predict(
            model_pb2.PredictRequest(name=model.name, csv=features), metadata=client.metadata, timeout=600
        )
        ours.predict_seconds = round(time.monotonic() - began, 2)
    except grpc.RpcError as exc:
        ours.model_error = _error(exc)
        return ours
    score_ours(ours, table, answer, holdout[table.target], y_train)
    return ours


def score_ours(ours: Ours, table: Table, answer: model_pb2.PredictResponse, y_true: pd.Series, y_train: pd.Series):
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

    if len(answer.predictions) != len(y_true):
        ours.model_error = f"Predict answered {len(answer.predictions)} predictions for {len(y_true)} rows"
        return
    if table.task == "regression":
        ours.score = float(r2_score(y_true, [p.value for p in answer.predictions]))
        return
    truth = [label_key(v) for v in y_true]
    ours.score = float(accuracy_score(truth, [label_key(p.label) for p in answer.predictions]))
    labels = sorted(pd.unique(y_train))
    classes = [label_key(c) for c in answer.classes]
    positive = label_key(labels[-1]) if len(labels) == 2 else None
    if positive in classes and all(len(p.probabilities) == len(classes) for p in answer.predictions):
        column = classes.index(positive)
        proba = np.array([p.probabilities[column] for p in answer.predictions])
        ours.roc_auc = float(roc_auc_score(np.array(truth) == positive, proba))


# ------------------------------------------------------------------ goals and report


@dataclass
class Outcome:
    table: str
    target: str
    task: str
    metric: str
    train_rows: int
    holdout_rows: int
    budget: float
    ours: Ours
    anchors: dict[str, dict[str, Any]] = field(default_factory=dict)
    goals: dict[str, bool | None] = field(default_factory=dict)
    verdict: str = ""


def judge(outcome: Outcome) -> None:
    ours, budget = outcome.ours, outcome.budget
    scores = {a: r["score"] for a, r in outcome.anchors.items() if r.get("score") is not None}
    plain = [scores[a] for a in ("rf", "hgb") if a in scores]
    mine = ours.score
    goals: dict[str, bool | None] = {"succeeded": ours.state == "SUCCEEDED"}
    goals["vs_best_anchor"] = None if not scores else mine is not None and mine >= max(scores.values()) - TOLERANCE
    goals["vs_rf_hgb"] = None if not plain else mine is not None and mine >= max(plain)
    limit = budget * 1.05 + 1
    goals["in_budget"] = None if ours.duration_seconds is None else ours.duration_seconds <= limit
    if ours.duration_seconds is None and ours.state in ("SUCCEEDED", "STOPPED"):
        goals["in_budget"] = False
    outcome.goals = goals
    outcome.verdict = "PASS" if all(v is not False for v in goals.values()) and mine is not None else "FAIL"


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def shown(score: float | None, auc: float | None, binary: bool) -> str:
    if score is None:
        return "-"
    return f"{score:.3f} / {fmt(auc)}" if binary else f"{score:.3f}"


def print_tables(outcomes: list[Outcome], anchors: list[str], budget: float) -> None:
    head = ["table (target)", "metric", "ours"] + [ANCHOR_TITLES[a] for a in anchors]
    print(f"\nHoldout scores (25 %, random_state 0; budget {budget:g} s for ours, FLAML and AutoGluon)\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for o in outcomes:
        binary = o.metric.startswith("accuracy /")
        cells = [f"{o.table} ({o.target})", o.metric, shown(o.ours.score, o.ours.roc_auc, binary)]
        for a in anchors:
            r = o.anchors.get(a, {})
            cells.append("error" if "error" in r else shown(r.get("score"), r.get("roc_auc"), binary))
        print("| " + " | ".join(cells) + " |")

    print("\nOur run\n")
    head = [
        "table",
        "state",
        "models evaluated",
        "failed",
        "stopped",
        "stop reason",
        "duration / budget s",
        "winner (CV score)",
        "train s",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for o in outcomes:
        u = o.ours
        winner = "-"
        if u.best_family:
            kind = f", {u.best_job_type}" if u.best_job_type else ""
            members = f", {u.ensemble_members} members" if u.ensemble_members else ""
            winner = f"{u.best_family}{kind}{members} ({fmt(u.best_cv_score)})"
        cells = [
            o.table,
            u.state or "-",
            "-" if u.models_evaluated is None else str(u.models_evaluated),
            "-" if u.models_failed is None else str(u.models_failed),
            "-" if u.models_stopped is None else str(u.models_stopped),
            u.stop_reason or "-",
            f"{fmt(u.duration_seconds, 1)} / {o.budget:g}",
            winner,
            fmt(u.train_seconds, 1),
        ]
        print("| " + " | ".join(cells) + " |")

    print(f"\nGoals (ours >= best anchor - {TOLERANCE}, >= max(RF, HGB); duration <= budget x 1.05 + 1 s)\n")
    head = ["table", "SUCCEEDED", "vs best anchor", "vs RF/HGB", "in budget", "verdict"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    mark = {True: "PASS", False: "FAIL", None: "n/a"}
    for o in outcomes:
        g = o.goals
        cells = [o.table] + [mark[g.get(k)] for k in ("succeeded", "vs_best_anchor", "vs_rf_hgb", "in_budget")]
        print("| " + " | ".join([*cells, o.verdict]) + " |")

    details = []
    for o in outcomes:
        u = o.ours
        if u.state != "SUCCEEDED":
            details.append(f"{o.table}: run {u.run or '-'} {u.state}: {u.status_message or '(no status message)'}")
        if u.start_error:
            details.append(f"{o.table}: StartRun answered {u.start_error}")
        if u.model_error or (u.model_state and u.model_state != "READY"):
            details.append(f"{o.table}: trained model {u.model_state or '-'}: {u.model_error}")
        if u.resolved_task and u.resolved_task.removeprefix("TASK_").lower() != o.task:
            details.append(f"{o.table}: the suite resolved {u.resolved_task}, the anchors were told {o.task}")
        for note in u.notes:
            details.append(f"{o.table}: run note: {note}")
        for reason, count in list(u.failures.items())[:4]:
            details.append(f"{o.table}: {count} candidate(s) {reason}")
        for a, r in o.anchors.items():
            if "error" in r:
                details.append(f"{o.table}: anchor {a} failed: {r['error']}")
    if details:
        print("\nDetails\n")
        for line in details:
            print(f"- {line}")
    passed = sum(o.verdict == "PASS" for o in outcomes)
    print(f"\n{passed} of {len(outcomes)} tables PASS", flush=True)


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="make bench/.venv-anchors, then exit")
    parser.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated subset of {','.join(TABLES)}")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds, for ours, FLAML and AutoGluon")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--skip-anchors", action="store_true", help="only our run")
    group.add_argument("--anchors", default=",".join(ANCHORS), help=f"comma-separated subset of {','.join(ANCHORS)}")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (suite logs, split files)")
    args = parser.parse_args(argv)
    args.table_list = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in args.table_list if t not in TABLES]
    args.anchor_list = [] if args.skip_anchors else [a.strip() for a in args.anchors.split(",") if a.strip()]
    unknown += [a for a in args.anchor_list if a not in ANCHORS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    if args.budget <= 0:
        parser.error("--budget must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup:
        setup_anchors()
        return 0
    if args.anchor_list:
        setup_anchors()
    folder = Path(tempfile.mkdtemp(prefix="automl-quality-"))
    print(f"working folder {folder} (suite logs, split files)", flush=True)
    outcomes: list[Outcome] = []
    suite = Suite(folder)
    started = time.monotonic()
    try:
        suite.start()
        with Client(Connection(target=suite.target, timeout=120)) as client:
            for name in args.table_list:
                table = TABLES[name]
                train_path, holdout_path, train, holdout = split(table, folder)
                binary = table.task == "classification" and train[table.target].nunique() == 2
                metric = "r2" if table.task == "regression" else "accuracy / roc_auc" if binary else "accuracy"
                print(f"\n== {name}: {len(train)} train, {len(holdout)} holdout rows, {metric}", flush=True)
                try:
                    ours = run_ours(client, table, train_path, holdout, train[table.target], args.budget)
                except (grpc.RpcError, TimeoutError) as exc:  # reported in the tables, the next table goes on
                    ours = Ours(
                        state="ERROR", status_message=_error(exc) if isinstance(exc, grpc.RpcError) else str(exc)
                    )
                print(
                    f"   ours: {ours.state} in {fmt(ours.duration_seconds, 1)} s, {ours.models_evaluated} models,"
                    f" winner {ours.best_family or '-'}, holdout {fmt(ours.score)}"
                    + (f" ({ours.status_message})" if ours.status_message else ""),
                    flush=True,
                )
                outcome = Outcome(name, table.target, table.task, metric, len(train), len(holdout), args.budget, ours)
                for anchor in args.anchor_list:
                    result = run_anchor(anchor, table, train_path, holdout_path, args.budget)
                    outcome.anchors[anchor] = result
                    said = result.get("error") or f"{fmt(result.get('score'))} (AUC {fmt(result.get('roc_auc'))})"
                    print(f"   {anchor}: {said} in {result['wall_seconds']:.1f} s", flush=True)
                judge(outcome)
                outcomes.append(outcome)
    finally:
        suite.stop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print_tables(outcomes, args.anchor_list, args.budget)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        document = {
            "budget": args.budget,
            "anchors": args.anchor_list,
            "tolerance": TOLERANCE,
            "tables": [asdict(o) for o in outcomes],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if outcomes and all(o.verdict == "PASS" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
