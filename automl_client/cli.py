"""`automl`: the AutoML suite from the command line.

    automl datasets upload glass.csv
    automl experiments create --dataset <id> --target Type
    automl runs start --experiment <id> --max-time 5m --max-models 200 --watch
    automl leaderboard <run>
    automl models train <result> && automl models test <model>
    automl models predict <model> new.csv -o predictions.csv

Tables for people; with --json, one JSON document (the proto3 JSON mapping)
for scripts. Where to connect: --gateway / AUTOML_TARGET (default
localhost:50051), --api-key / AUTOML_API_KEY, --tls, --ca-file. These global
options go before or after the command: `automl runs list --json` is
`automl --json runs list`.

Tables fit the terminal (its width, or COLUMNS when set): ids are always
whole on one line, to be copied; names, pipelines and messages are shortened
with "…", and the least useful columns are left out (the table's caption says
which) when still too wide. Into a pipe or a file, tables keep every column
whole (set COLUMNS to fit them to a width).

Exit codes: 0 done; 1 the server refused or failed the request; 2 wrong
usage; 3 not found; 4 not authenticated or not allowed; 5 the gateway cannot
be reached; 6 a watched run ended FAILED or CANCELLED.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from automl.v1 import common_pb2, run_pb2
from automl_client import views
from automl_client.client import Client, Connection, resource

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_AUTH, EXIT_UNAVAILABLE, EXIT_RUN_FAILED = range(7)
EXIT_CODES = {
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
}
FORMATS = {"csv": run_pb2.EXPORT_FORMAT_CSV, "xlsx": run_pb2.EXPORT_FORMAT_XLSX, "json": run_pb2.EXPORT_FORMAT_JSON}
TASKS = {
    "auto": common_pb2.TASK_AUTO,
    "classification": common_pb2.TASK_CLASSIFICATION,
    "regression": common_pb2.TASK_REGRESSION,
}
# The enum's numbers, as its values are typed (the descriptor's numbers are plain ints).
METRICS = {
    v.name.removeprefix("METRIC_").lower(): cast(common_pb2.Metric, v.number)
    for v in common_pb2.Metric.DESCRIPTOR.values
    if v.number
}
FAILED_STATES = (common_pb2.RUN_STATE_FAILED, common_pb2.RUN_STATE_CANCELLED)


Handler = Callable[[Client, "Output", argparse.Namespace], int]
"""A command: what it does with the parsed arguments, and the exit code."""


class UsageError(Exception):
    """A wrong argument, found after parsing."""


def seconds(text: str) -> float:
    """ "90", "90s", "5m", "1h30m", "2.5h" -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 5m or 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


class Output:
    """Where results go: rich tables for people, one JSON document for scripts."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.console = Console(width=output_width())
        self.errors = Console(stderr=True)

    def show(self, value: Message | Sequence[Message] | dict[str, Any], view: Any = None) -> None:
        if self.json:
            print(json.dumps(_jsonable(value), indent=1))
        else:  # not cropped: a table only gets wider than the terminal when its ids alone are
            self.console.print(view if view is not None else _jsonable(value), crop=False)

    def say(self, text: str) -> None:
        if not self.json:
            self.console.print(text)


UNLIMITED = 100_000
"""The width of output that goes to no terminal: every line as long as it is."""


def output_width() -> int | None:
    """What tables are fitted to: COLUMNS when set, the terminal's width
    (followed as it changes) when the output is a terminal, both as rich finds
    them (None); otherwise (a pipe, a file) no limit, so that every column
    stays whole."""
    columns = os.environ.get("COLUMNS", "")
    if (columns.isdigit() and int(columns) > 0) or sys.stdout.isatty():
        return None
    return UNLIMITED


def _jsonable(value: Any) -> Any:
    if isinstance(value, Message):
        return json_format.MessageToDict(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- commands


def datasets_upload(api: Client, out: Output, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    options = common_pb2.CsvOptions(delimiter=args.delimiter or "", encoding=args.encoding or "")
    if args.no_header:
        options.has_header = False
    if out.json:
        dataset = api.upload_dataset(path, args.name or path.name, csv_options=options)
    else:
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=out.console, transient=True) as progress:
            task = progress.add_task(f"uploading {path.name}", total=path.stat().st_size)
            dataset = api.upload_dataset(
                path, args.name or path.name, csv_options=options, progress=lambda n: progress.advance(task, n)
            )
    out.show(dataset, views.datasets_table([dataset]))
    return EXIT_OK


def datasets_list(api: Client, out: Output, args: argparse.Namespace) -> int:
    datasets = list(api.list_datasets())
    out.show(datasets, views.datasets_table(datasets))
    return EXIT_OK


def datasets_show(api: Client, out: Output, args: argparse.Namespace) -> int:
    dataset = api.get_dataset(args.id)
    out.show(dataset, Group(views.datasets_table([dataset]), views.columns_table(dataset.columns)))
    return EXIT_OK


def datasets_preview(api: Client, out: Output, args: argparse.Namespace) -> int:
    preview = api.preview_dataset(args.id, args.rows)
    rows = [[_cell(v) for v in row.values] for row in preview.rows]
    view = views.preview_table(
        f"first {len(rows)} of {preview.total_rows} rows", [c.name for c in preview.columns], rows
    )
    out.show(preview, view)
    return EXIT_OK


def datasets_delete(api: Client, out: Output, args: argparse.Namespace) -> int:
    api.delete_dataset(args.id, force=args.force)
    out.show({"deleted": resource(args.id, "datasets")}, f"deleted {resource(args.id, 'datasets')}")
    return EXIT_OK


def experiments_create(api: Client, out: Output, args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {"task": TASKS[args.task], "seed": args.seed}
    if args.metric:
        fields["primary_metric"] = METRICS[args.metric]
    if args.folds:
        fields["cv_folds"] = args.folds
    if args.holdout is not None:
        fields["holdout_fraction"] = args.holdout
    if args.families:
        fields["allowed_model_families"] = args.families
    if args.exclude:
        fields["excluded_columns"] = args.exclude
    experiment = api.create_experiment(args.dataset, args.target, args.name or "", args.id or "", **fields)
    out.show(experiment, views.experiments_table([experiment]))
    return EXIT_OK


def experiments_list(api: Client, out: Output, args: argparse.Namespace) -> int:
    experiments = list(api.list_experiments())
    out.show(experiments, views.experiments_table(experiments))
    return EXIT_OK


def experiments_show(api: Client, out: Output, args: argparse.Namespace) -> int:
    experiment = api.get_experiment(args.id)
    out.show(experiment, views.experiments_table([experiment]))
    return EXIT_OK


def experiments_update(api: Client, out: Output, args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["display_name"] = args.name
    if args.description is not None:
        fields["description"] = args.description
    if not fields:
        raise UsageError("nothing to change: give --name and/or --description")
    experiment = api.update_experiment(args.id, **fields)
    out.show(experiment, views.experiments_table([experiment]))
    return EXIT_OK


def experiments_delete(api: Client, out: Output, args: argparse.Namespace) -> int:
    api.delete_experiment(args.id)
    out.show({"deleted": resource(args.id, "experiments")}, f"deleted {resource(args.id, 'experiments')}")
    return EXIT_OK


def runs_start(api: Client, out: Output, args: argparse.Namespace) -> int:
    run = api.start_run(
        args.experiment,
        max_time=args.max_time,
        target_score=args.target_score,
        max_models=args.max_models or 0,
        no_improvement=args.no_improvement or 0,
        model_time_limit=args.model_time_limit,
        workers=args.workers or 0,
    )
    if args.watch:
        return _watch(api, out, run.name)
    out.show(run, views.runs_table([run]))
    return EXIT_OK


def runs_watch(api: Client, out: Output, args: argparse.Namespace) -> int:
    return _watch(api, out, resource(args.run, "runs"))


def _watch(api: Client, out: Output, name: str) -> int:
    view = views.RunView()
    if out.json:
        for message in api.watch(name, after_sequence=0):
            view.feed(message)
    else:
        with Live(view.render(), console=out.console, refresh_per_second=4) as live:
            for message in api.watch(name, after_sequence=0):
                view.feed(message)
                live.update(view.render())
    run = api.get_run(name)
    if out.json:
        out.show(run)
    else:
        out.console.print()
        board = api.leaderboard(name, limit=10)
        out.console.print(views.leaderboard_table(board, "leaderboard, top 10", _cv_folds(api, run)), crop=False)
    return EXIT_RUN_FAILED if run.state in FAILED_STATES else EXIT_OK


def _cv_folds(api: Client, run: run_pb2.Run) -> int:
    """The run's experiment's cross-validation folds (0: the default), to show
    "3/5" for a candidate that ran fewer; 0 when the experiment is gone."""
    try:
        return api.get_experiment(run.experiment).cv_folds
    except grpc.RpcError:
        return 0


def runs_list(api: Client, out: Output, args: argparse.Namespace) -> int:
    runs = list(api.list_runs(args.experiment or ""))
    out.show(runs, views.runs_table(runs))
    return EXIT_OK


def runs_show(api: Client, out: Output, args: argparse.Namespace) -> int:
    run = api.get_run(args.run)
    out.show(run, Group(views.runs_table([run]), views.run_details(run)))
    return EXIT_OK


def runs_stop(api: Client, out: Output, args: argparse.Namespace) -> int:
    run = api.stop_run(args.run)
    out.show(run, views.runs_table([run]))
    return EXIT_OK


def runs_export(api: Client, out: Output, args: argparse.Namespace) -> int:
    path = api.export_run(args.run, FORMATS[args.format], args.output)
    out.show({"file": str(path), "bytes": path.stat().st_size}, f"wrote {path} ({path.stat().st_size} bytes)")
    return EXIT_OK


def leaderboard(api: Client, out: Output, args: argparse.Namespace) -> int:
    metric = METRICS[args.metric] if args.metric else common_pb2.METRIC_UNSPECIFIED
    board = api.leaderboard(args.run, limit=args.limit, metric=metric)
    if out.json:
        out.show(board)
    else:
        out.show(board, views.leaderboard_table(board, cv_folds=_cv_folds(api, api.get_run(args.run))))
    return EXIT_OK


def models_train(api: Client, out: Output, args: argparse.Namespace) -> int:
    rows = "every row, the holdout included" if args.include_holdout else "every training row"
    if out.json or args.no_wait:
        model = api.train_model(args.result, wait=not args.no_wait, include_holdout=args.include_holdout)
    else:
        with out.console.status(f"training {resource(args.result, 'modelResults')} on {rows}"):
            model = api.train_model(args.result, include_holdout=args.include_holdout)
    out.show(model, views.models_table([model]))
    if model.error_message:
        out.errors.print(f"training failed: {model.error_message}")
        return EXIT_ERROR
    return EXIT_OK


def models_test(api: Client, out: Output, args: argparse.Namespace) -> int:
    evaluation = api.test_model(args.model)
    out.show(evaluation, views.evaluation_view(evaluation))
    return EXIT_OK


def models_list(api: Client, out: Output, args: argparse.Namespace) -> int:
    flt = f'run="{resource(args.run, "runs")}"' if args.run else ""
    models = list(api.list_trained_models(flt))
    out.show(models, views.models_table(models))
    return EXIT_OK


def models_show(api: Client, out: Output, args: argparse.Namespace) -> int:
    model = api.get_trained_model(args.model)
    parts: list[Any] = [views.models_table([model])]
    if model.HasField("holdout_evaluation"):
        parts.append(views.evaluation_view(model.holdout_evaluation))
    out.show(model, Group(*parts))
    return EXIT_OK


def models_predict(api: Client, out: Output, args: argparse.Namespace) -> int:
    source = Path(args.input)
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    target = Path(args.output)
    partial = target.with_name(target.name + ".part")
    rows = 0
    try:
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            classes: list[str] = []
            for block in api.predict_file(args.model, source):
                if block.classes and not classes:
                    classes = list(block.classes)
                    writer.writerow(["prediction", *(f"probability_{c}" for c in classes)])
                elif not classes and rows == 0:
                    writer.writerow(["prediction"])
                for p in block.predictions:
                    label = p.label if classes else f"{p.value:.10g}"
                    writer.writerow([label, *(f"{v:.6g}" for v in p.probabilities)])
                    rows += 1
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    out.show({"file": str(target), "rows": rows}, f"wrote {rows} predictions to {target}")
    return EXIT_OK


def _cell(value: Any) -> str:
    kind = value.WhichOneof("kind")
    if kind == "null_value":
        return ""
    if kind == "number_value":
        return f"{value.number_value:g}"
    return str(getattr(value, kind))


# ------------------------------------------------------------------ parser


GLOBAL_OPTIONS = "global options (before or after the command)"


def add_global_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Options every command takes, anywhere on the line: `automl --json runs
    list`, `automl runs --json list` and `automl runs list --json` are one. The
    top-level parser gives the defaults; a command's parser (defaults=False)
    sets a value only when given (SUPPRESS), so it never overwrites one given
    earlier on the line with its own default."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group(GLOBAL_OPTIONS)
    group.add_argument(
        "--gateway", default=default(None), help="gateway host:port (AUTOML_TARGET; default localhost:50051)"
    )
    group.add_argument("--api-key", default=default(None), help="API key (AUTOML_API_KEY)")
    group.add_argument("--tls", action="store_true", default=default(None), help="use TLS (AUTOML_TLS=1)")
    group.add_argument("--ca-file", default=default(None), help="PEM file of the CA to trust (AUTOML_TLS_CA_FILE)")
    group.add_argument(
        "--json", action="store_true", default=default(False), help="print one JSON document instead of tables"
    )


def commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser under `parser`: its commands, theirs, and so on."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases name one parser twice
                found += [sub, *commands(sub)]
    return found


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="automl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_global_options(root, defaults=True)
    groups = root.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler, help: str
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    datasets = groups.add_parser("datasets", help="upload and inspect CSV files").add_subparsers(
        dest="command", required=True
    )
    upload = command(datasets, "upload", datasets_upload, "upload a CSV file (with a progress bar)")
    upload.add_argument("file")
    upload.add_argument("--name", help="display name (default: the file name)")
    upload.add_argument("--delimiter", help="field separator (default ,)")
    upload.add_argument("--encoding", help="text encoding (default utf-8)")
    upload.add_argument("--no-header", action="store_true", help="the first line is data, not column names")
    command(datasets, "list", datasets_list, "list datasets, newest first")
    command(datasets, "show", datasets_show, "a dataset and its column profile").add_argument("id")
    preview = command(datasets, "preview", datasets_preview, "the first rows of a dataset")
    preview.add_argument("id")
    preview.add_argument("--rows", type=int, default=20)
    delete = command(datasets, "delete", datasets_delete, "delete a dataset")
    delete.add_argument("id")
    delete.add_argument("--force", action="store_true", help="also delete the experiments that use it")

    experiments = groups.add_parser("experiments", help="what to predict, how to measure it").add_subparsers(
        dest="command", required=True
    )
    create = command(experiments, "create", experiments_create, "create an experiment on a dataset")
    create.add_argument("--dataset", required=True, help="dataset id or name")
    create.add_argument("--target", required=True, help="the column to predict")
    create.add_argument("--name", help="display name")
    create.add_argument("--id", help="client-chosen id (4 to 63 lowercase letters, digits, hyphens)")
    create.add_argument("--task", choices=sorted(TASKS), default="auto")
    create.add_argument("--metric", choices=sorted(METRICS), help="the metric models are ranked by")
    create.add_argument("--folds", type=int, help="cross-validation folds (2 to 20; default 5)")
    create.add_argument("--holdout", type=float, help="share of rows kept out to test the chosen model (default 0.2)")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--families", nargs="+", help="only these model families, e.g. LGBMClassifier")
    create.add_argument("--exclude", nargs="+", help="columns left out of the features")
    command(experiments, "list", experiments_list, "list experiments, newest first")
    command(experiments, "show", experiments_show, "an experiment").add_argument("id")
    update = command(experiments, "update", experiments_update, "rename or describe an experiment")
    update.add_argument("id")
    update.add_argument("--name")
    update.add_argument("--description")
    command(experiments, "delete", experiments_delete, "delete an experiment and its runs").add_argument("id")

    runs = groups.add_parser("runs", help="start, follow and stop searches").add_subparsers(
        dest="command", required=True
    )
    start = command(runs, "start", runs_start, "start a search")
    start.add_argument("--experiment", required=True, help="experiment id or name")
    start.add_argument("--max-time", type=seconds, help="time budget, e.g. 90s, 5m, 1h30m")
    start.add_argument("--target-score", type=float, help="stop once a model scores this well")
    start.add_argument("--max-models", type=int, help="stop after this many models")
    start.add_argument("--no-improvement", type=int, help="stop after this many models in a row without a better one")
    start.add_argument("--model-time-limit", type=seconds, help="limit of one model's cross-validation")
    start.add_argument("--workers", type=int, help="models evaluated at once (default: the runner's cores)")
    start.add_argument("--watch", action="store_true", help="follow the run live until it ends")
    command(runs, "watch", runs_watch, "follow a run live until it ends").add_argument("run")
    listing = command(runs, "list", runs_list, "list runs, newest first")
    listing.add_argument("--experiment", help="only this experiment's runs")
    command(runs, "show", runs_show, "a run").add_argument("run")
    command(runs, "stop", runs_stop, "ask a run to stop").add_argument("run")
    export = command(runs, "export", runs_export, "save every result of a run as a file")
    export.add_argument("run")
    export.add_argument("--format", choices=sorted(FORMATS), default="xlsx")
    export.add_argument("-o", "--output", help="file to write (default: the name the server suggests)")

    board = command(groups, "leaderboard", leaderboard, "a run's models, best first")
    board.add_argument("run")
    board.add_argument("--limit", type=int, default=20, help="how many (0: all)")
    board.add_argument("--metric", choices=sorted(METRICS), help="rank by this metric instead")

    models = groups.add_parser("models", help="train, test and predict with a result").add_subparsers(
        dest="command", required=True
    )
    train = command(models, "train", models_train, "refit a result's pipeline on every training row")
    train.add_argument("result", help="model result id or name")
    train.add_argument("--no-wait", action="store_true", help="return while it trains")
    train.add_argument(
        "--include-holdout",
        action="store_true",
        help="fit on the holdout rows too (more to learn from; the model can then not be tested)",
    )
    command(models, "test", models_test, "score a trained model on the holdout").add_argument("model")
    model_list = command(models, "list", models_list, "list trained models")
    model_list.add_argument("--run", help="only this run's models")
    command(models, "show", models_show, "a trained model").add_argument("model")
    predict = command(models, "predict", models_predict, "predict every row of a CSV file")
    predict.add_argument("model")
    predict.add_argument("input", help="CSV file with a header row")
    predict.add_argument("-o", "--output", required=True, help="CSV file of predictions to write")
    for sub in commands(root):  # last: after each command's own arguments in its usage and help
        add_global_options(sub, defaults=False)
    return root


def _error_line(exc: grpc.RpcError) -> str:
    from automl.common.status import field_violations

    code = exc.code()
    line = f"error: {code.name}: {exc.details()}"
    violations = field_violations(cast(grpc.Call, exc))  # what grpc raises for a failed call is also its Call
    if len(violations) > 1:
        line += " [" + "; ".join(f"{v.field}: {v.description}" for v in violations) + "]"
    if code is grpc.StatusCode.UNAVAILABLE:
        line += " (is the gateway running? --gateway / AUTOML_TARGET)"
    return line


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Output(args.json)
    try:
        connection = Connection.from_env(target=args.gateway, api_key=args.api_key, tls=args.tls, ca_file=args.ca_file)
        if connection.ca_file and not Path(connection.ca_file).is_file():
            raise UsageError(f"{connection.ca_file}: no such file (--ca-file / AUTOML_TLS_CA_FILE)")
        with Client(connection) as api:
            handler: Handler = args.handler  # set by parser() on each command
            return handler(api, out, args)
    except UsageError as exc:
        out.errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_USAGE
    except grpc.RpcError as exc:
        out.errors.print(_error_line(exc), highlight=False, markup=False, soft_wrap=True)
        return EXIT_CODES.get(exc.code(), EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
