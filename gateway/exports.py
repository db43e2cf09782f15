"""ExportRunResults: a run's results as CSV, an Excel workbook or JSON lines.

The CSV and the workbook have one row per model with its hyper-parameters
flattened into columns (as aikit's result file had), the mean and spread of
each metric, folds run and times; the workbook adds the per-fold scores and
the errors. Results are read page by page and spooled to a temporary file,
so a run of any size is exported in bounded memory; the file is then
streamed in 1 MiB chunks.

Text in the CSV and the workbook comes from users (column names, error
messages, hyper-parameters): every text cell that a spreadsheet would take
for a formula is neutralised (`neutralise`), numbers stay numbers.
"""

from __future__ import annotations

import asyncio
import csv
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from automl.common import metrics
from automl.v1 import run_pb2
from gateway.backends import Backends

CHUNK = 1024 * 1024
PAGE = 500
FORMATS = {
    run_pb2.EXPORT_FORMAT_CSV: ("text/csv; charset=utf-8", "csv"),
    run_pb2.EXPORT_FORMAT_XLSX: ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    run_pb2.EXPORT_FORMAT_JSON: ("application/x-ndjson", "jsonl"),
}
FIXED = [
    "index",
    "model_result",
    "model_family",
    "outcome",
    "primary_score",
    "was_new_best",
    "folds_run",
    "sample_rows",
    "job_type",
    "ensemble_members",
    "fit_time_seconds",
    "score_time_seconds",
    "pipeline_steps",
    "error_message",
]


# OWASP's CSV-injection rule: a cell starting with one of these is a formula
# (or the start of one) to Excel, LibreOffice and Sheets; openpyxl even
# writes a string starting with "=" as a live formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """`value`, with a leading single quote if it is text a spreadsheet would
    evaluate. Numbers are left alone: a negative number written as a number is
    not a formula, while the text "-1+2" is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _safe(values: list[Any]) -> list[Any]:
    return [neutralise(v) for v in values]


def decode(value: Any) -> Any:
    """aikit's json_helper encoding ({"__type__": "__tuple__", "__items__": [...]}) to Python."""
    if isinstance(value, dict):
        kind = value.get("__type__")
        items: Any = value.get("__items__")  # the encoded items when kind is one of the two below
        if kind == "__tuple__":
            return tuple(decode(v) for v in items)
        if kind == "__dict__":
            return {str(k): decode(v) for k, v in items}
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def hyper_parameters(model_json: str) -> dict[str, Any]:
    """The model description's parameters as {"ClassName__param": value}: each
    (class name, parameters) node of the description names its parameters."""
    out: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if _is_model(node):
            for key, value in node[1].items():
                if _holds_model(value):
                    walk(value)
                else:
                    out[f"{node[0]}__{key}"] = (
                        value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
                    )
        elif isinstance(node, (list, tuple, dict)):
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    if model_json:
        try:
            walk(decode(json.loads(model_json)))
        except ValueError:
            return {}
    return out


def _is_model(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict)


def _holds_model(value: Any) -> bool:
    """Whether a parameter value is, or nests, a model (a pipeline's steps)."""
    if _is_model(value):
        return True
    if isinstance(value, (list, tuple)):
        return any(map(_holds_model, value))
    return isinstance(value, dict) and any(map(_holds_model, value.values()))


def metric_values(result: run_pb2.ModelResult) -> dict[str, float]:
    out = {}
    for m in result.metrics:
        name = metrics.name(m.metric)
        out[f"{name}_mean"] = m.mean
        out[f"{name}_std"] = m.std
        if m.HasField("train_mean"):
            out[f"{name}_train_mean"] = m.train_mean
    return out


def row(result: run_pb2.ModelResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": result.index,
        "model_result": result.name,
        "model_family": result.model_family,
        "outcome": run_pb2.ModelResult.Outcome.Name(result.outcome).removeprefix("OUTCOME_").lower(),
        "primary_score": result.primary_score if result.HasField("primary_score") else None,
        "was_new_best": result.was_new_best,
        "folds_run": result.folds_run,
        "sample_rows": result.sample_rows or None,
        "job_type": result.job_type,
        "ensemble_members": "; ".join(f"#{m.index} x{m.weight:.3g}" for m in result.ensemble_members),
        "fit_time_seconds": round(result.fit_time_seconds, 4),
        "score_time_seconds": round(result.score_time_seconds, 4),
        "pipeline_steps": " > ".join(result.pipeline_steps),
        "error_message": result.error_message,
    }
    out.update(metric_values(result))
    out.update(hyper_parameters(result.model_json))
    return out


async def _results(backends: Backends, run: str) -> AsyncIterator[run_pb2.ModelResult]:
    token = ""
    while True:
        page = await backends.storage.ListModelResults(
            run_pb2.ListModelResultsRequest(
                run=run, page_size=PAGE, page_token=token, view=run_pb2.MODEL_RESULT_VIEW_FULL
            )
        )
        for result in page.model_results:
            yield result
        token = page.next_page_token
        if not token:
            return


@dataclass
class Layout:
    """The tables' columns, learnt while the results were spooled."""

    columns: list[str]
    """The results table: fixed ones, then metrics, then hyper-parameters, in order of appearance."""
    fold_columns: list[str]
    """aikit's per-fold columns, in order of appearance."""


async def _spool(backends: Backends, run: str, folder: Path) -> tuple[Path, Layout]:
    """Every result as a JSON line in a file, and the columns of the tables."""
    path = folder / "results.jsonl"
    metric_columns: dict[str, None] = {}
    params: dict[str, None] = {}
    fold_columns: dict[str, None] = {}
    with path.open("w", encoding="utf-8") as out:
        async for result in _results(backends, run):
            out.write(json_format.MessageToJson(result, indent=None, preserving_proto_field_name=True) + "\n")
            metric_columns.update(dict.fromkeys(metric_values(result)))
            params.update(dict.fromkeys(hyper_parameters(result.model_json)))
            for fold in result.folds:
                fold_columns.update(dict.fromkeys(fold.values))
    return path, Layout([*FIXED, *metric_columns, *params], list(fold_columns))


def _read(path: Path) -> Iterator[run_pb2.ModelResult]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield json_format.Parse(line, run_pb2.ModelResult())


def _write_csv(spool: Path, layout: Layout, target: Path) -> None:
    with target.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(_safe(layout.columns))
        for result in _read(spool):
            values = row(result)
            writer.writerow(_safe([values.get(c) for c in layout.columns]))


ERROR_COLUMNS = ("index", "model_result", "model_family", "outcome", "error_message", "pipeline_steps")


def _write_xlsx(spool: Path, layout: Layout, target: Path, run: str) -> None:
    """One pass over the results, each row appended to its sheets (openpyxl's
    write-only sheets each stream to a file of their own)."""
    from openpyxl import Workbook  # only exports need it

    book = Workbook(write_only=True)
    table, folds, failed, about = (book.create_sheet(name) for name in ("results", "folds", "errors", "run"))
    # Every row goes through _safe, headers included: a fold column or a
    # hyper-parameter is named by what the run recorded.
    table.append(_safe(layout.columns))
    folds.append(_safe(["index", "model_result", "model_family", "fold_nb", *layout.fold_columns]))
    failed.append(list(ERROR_COLUMNS))
    for result in _read(spool):
        values = row(result)
        table.append(_safe([_cell(values.get(c)) for c in layout.columns]))
        for fold in result.folds:
            scores = [fold.values.get(k) for k in layout.fold_columns]
            folds.append(_safe([result.index, result.name, result.model_family, fold.fold_nb, *scores]))
        if result.outcome != run_pb2.ModelResult.OUTCOME_SUCCEEDED:
            failed.append(_safe([values[c] for c in ERROR_COLUMNS]))
    about.append(_safe(["run", run]))
    book.save(target)


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, float, str, bool)) else str(value)


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


async def export(
    backends: Backends, request: run_pb2.ExportRunResultsRequest
) -> AsyncIterator[run_pb2.ExportRunResultsResponse]:
    run = await backends.storage.GetRun(run_pb2.GetRunRequest(name=request.run))  # NOT_FOUND before any byte
    content_type, extension = FORMATS[request.format]
    filename = f"{run.name.replace('/', '-')}-results.{extension}"
    with tempfile.TemporaryDirectory(prefix="automl-export-") as tmp:
        folder = Path(tmp)
        spool, layout = await _spool(backends, run.name, folder)
        if request.format == run_pb2.EXPORT_FORMAT_JSON:
            target = spool
        elif request.format == run_pb2.EXPORT_FORMAT_CSV:
            target = folder / "results.csv"
            await asyncio.to_thread(_write_csv, spool, layout, target)
        else:
            target = folder / "results.xlsx"
            await asyncio.to_thread(_write_xlsx, spool, layout, target, run.name)
        first = True
        for chunk in _chunks(target):
            if first:
                yield run_pb2.ExportRunResultsResponse(content_type=content_type, filename=filename, chunk=chunk)
                first = False
            else:
                yield run_pb2.ExportRunResultsResponse(chunk=chunk)
        if first:  # an empty file still says what it is
            yield run_pb2.ExportRunResultsResponse(content_type=content_type, filename=filename)
