"""Using what a search found: refit a result's pipeline on every training row
(the holdout's too when asked), test it on the experiment's holdout (each in a worker process that reads its
rows itself, so the runner never holds a large table), predict.

Train and test read the same rows the search used: the dataset is read again
with the same code and seed, and the holdout is checked against the split
recorded when the run started. A model file is only ever unpickled when its
bytes hash to the sha256 storage recorded when this service wrote it and
carry the seal of a runner's key (services.runner.signing), and only in a
worker process (services.runner.serving), never in the runner's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pandas as pd
from google.protobuf import json_format

from automl.common import errors, status
from automl.common.errors import InvalidArgument
from automl.common.runs import run_event
from automl.common.settings import Settings
from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, event_pb2, experiment_pb2, model_pb2
from services.runner import aikit_compat, predicting, problem, signing
from services.runner.clients import Services
from services.runner.serving import Served
from services.runner.workers import Outcome, Worker

log = logging.getLogger("automl.runner.models")

MODEL_KIND = "model/joblib"
STREAM_BLOCK_ROWS = 10_000
READY = model_pb2.TrainedModel.STATE_READY
TRAINING = model_pb2.TrainedModel.STATE_TRAINING
FAILED = model_pb2.TrainedModel.STATE_FAILED
MODEL_RECHECK_SECONDS = 1.0
"""How long Predict trusts what it last read of a model in storage (READY,
its file): calls within this answer without asking storage; the first one
after asks again, so a model whose experiment was deleted stops answering
within it, and one pointed at another file loads that one."""


class Models:
    """Training in the background, testing and predicting on demand, and a
    bounded cache of loaded models."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.training: dict[str, asyncio.Task[None]] = {}
        self.cache: OrderedDict[tuple[str, str, str], Served] = OrderedDict()
        self.by_name: dict[tuple[str, str], Served] = {}
        """(tenant, model name) -> its entry of `cache`, as storage last described it."""
        self.key = signing.model_key(settings)

    # ------------------------------------------------------------ training

    async def start_training(self, services: Services, name: str) -> model_pb2.TrainedModel:
        model = await services.get_trained_model(name)
        if model.state != TRAINING:
            state = model_pb2.TrainedModel.State.Name(model.state)
            raise errors.FailedPrecondition(f"{name} is {state}, not STATE_TRAINING: only a new model is trained")
        if name in self.training:
            raise errors.FailedPrecondition(f"{name} is already being trained")
        self.training[name] = asyncio.create_task(self._train(services, model), name=f"train {name}")
        return model

    async def _train(self, services: Services, model: model_pb2.TrainedModel) -> None:
        folder = Path(tempfile.mkdtemp(prefix="train-", dir=self.folder))
        beating = asyncio.create_task(self._heartbeat(services, model.name), name=f"heartbeat {model.name}")
        try:
            try:
                try:
                    ready = await self._fit(services, model, folder)
                finally:
                    beating.cancel()
            except Exception as exc:  # noqa: BLE001 - every failure ends the model FAILED, with its reason
                reason = exc.message if isinstance(exc, errors.AutoMLError) else f"{type(exc).__name__}: {exc}"
                log.warning("training failed", extra={"model": model.name, "error": reason})
                failed = model_pb2.TrainedModel(name=model.name, state=FAILED, error_message=reason)
                await services.update_trained_model(failed, ["state", "error_message"])
                trained = event_pb2.ModelTrained(
                    trained_model=model.name, model_result=model.model_result, state=FAILED, error_message=reason
                )
            else:
                trained = event_pb2.ModelTrained(
                    trained_model=model.name,
                    model_result=model.model_result,
                    state=READY,
                    fit_time_seconds=ready.fit_time_seconds,
                )
            await services.publish([event(model, model_trained=trained)])
        except Exception:
            log.exception("cannot record the end of a training", extra={"model": model.name})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            self.training.pop(model.name, None)

    async def _heartbeat(self, services: Services, name: str) -> None:
        """While training, the model's update_time moves: the gateway's supervisor
        ends (FAILED) a training whose runner stops moving it."""
        alive = model_pb2.TrainedModel(name=name, state=TRAINING)
        while True:
            await asyncio.sleep(self.settings.runner_heartbeat_seconds)
            try:
                await services.update_trained_model(alive, ["state"])
            except errors.AutoMLError as exc:
                log.warning("training heartbeat failed", extra={"model": name, "error": status.code_of(exc).name})

    async def _fit(self, services: Services, model: model_pb2.TrainedModel, folder: Path) -> model_pb2.TrainedModel:
        experiment, dataset, split = await self.recorded(services, model.run, folder)
        self._check_memory(dataset, experiment)
        result = await services.get_model_result(model.model_result)
        aikit_compat.load()
        from aikit.tools.json_helper import json_decoder

        path = folder / "model.joblib"
        job = {
            "model_json": json_decoder(json.loads(result.model_json)),
            "path": str(path),
            "include_holdout": model.includes_holdout,
        }
        done = await self._in_worker("fit", services, model, dataset, experiment, folder, job)
        check_split(done["holdout_digest"], dataset, split, model.run)
        await asyncio.to_thread(signing.seal, path, self.key)
        artifact = await services.write_artifact(MODEL_KIND, path)
        profiles = {p.name: p.inferred_type for p in dataset.columns}
        ready = model_pb2.TrainedModel(
            name=model.name,
            state=READY,
            artifact=artifact.name,
            classes=done["classes"],
            training_rows=done["training_rows"],
            fit_time_seconds=done["fit_time"],
            feature_columns=[
                model_pb2.FeatureColumn(name=str(original), type=profiles.get(str(original), c.COLUMN_TYPE_UNSPECIFIED))
                for original in done["columns"]
            ],
        )
        paths = ["state", "artifact", "classes", "training_rows", "fit_time_seconds", "feature_columns"]
        stored = await services.update_trained_model(ready, paths)
        log.info(
            "model trained",
            extra={"model": model.name, "rows": ready.training_rows, "seconds": round(ready.fit_time_seconds, 2)},
        )
        return stored

    async def _in_worker(
        self,
        mode: str,
        services: Services,
        model: model_pb2.TrainedModel,
        dataset: dataset_pb2.Dataset,
        experiment: experiment_pb2.Experiment,
        folder: Path,
        job: dict[str, Any],
    ) -> dict[str, Any]:
        """Run a "fit" or "test" job in a worker process that reads the
        dataset (streamed into `folder`) itself; its answer, or why it failed."""
        csv = folder / "dataset.csv"
        await services.download(dataset.name, csv)
        job = dict(
            job,
            csv=str(csv),
            dataset=dataset.SerializeToString(),
            experiment=experiment.SerializeToString(),
            sample_cells=self.settings.runner_sample_cells,
        )
        worker = Worker("", {"mode": mode})
        try:
            await worker.ready()
            done = await worker.evaluate(
                model.name,
                job,
                self.settings.runner_train_time_limit_seconds,
                self.settings.runner_worker_memory_mb * 2**20,
            )
        finally:
            worker.close()
        if done.outcome != Outcome.SUCCEEDED or done.rows is None:
            raise errors.FailedPrecondition(f"the {'refit' if mode == 'fit' else 'test'} failed: {done.error}")
        return cast("dict[str, Any]", done.rows)  # a fit or test job's answer, not a score table

    async def recorded(
        self, services: Services, run: str, folder: Path
    ) -> tuple[experiment_pb2.Experiment, dataset_pb2.Dataset, dict[str, Any]]:
        """The run's experiment, dataset and recorded split."""
        run_message = await services.get_run(run)
        experiment = await services.get_experiment(run_message.experiment)
        dataset = await services.get_dataset(experiment.dataset)
        started = await services.run_started(run)
        split_path = folder / "split.json"
        await services.read_artifact(started.split_artifact, split_path)
        return experiment, dataset, json.loads(split_path.read_text())

    def _check_memory(self, dataset: dataset_pb2.Dataset, experiment: experiment_pb2.Experiment) -> None:
        """A refit holds every training row in memory (no aikit pipeline fits
        in chunks): say how much before trying, rather than die trying."""
        limit = self.settings.runner_worker_memory_mb * 2**20
        # Measured on mixed tables: pandas holds a CSV in 2-5x its bytes; the fit copies it once more.
        needed = int(dataset.size_bytes * (1 - problem.holdout_fraction(experiment)) * 8)
        if limit and needed > limit:
            raise errors.FailedPrecondition(
                f"refitting on every training row of {dataset.name} ({dataset.row_count:,} rows, "
                f"{dataset.size_bytes / 2**30:.1f} GiB of CSV) needs about {needed / 2**30:.1f} GiB of memory; "
                f"a worker may use {limit / 2**30:.1f} GiB: raise AUTOML_RUNNER_WORKER_MEMORY_MB"
            )

    # ------------------------------------------------------------- loading

    @staticmethod
    def _ready(model: model_pb2.TrainedModel) -> None:
        if model.state == READY:
            return
        if model.state == TRAINING:
            raise errors.FailedPrecondition(f"{model.name} is still training: wait until it is STATE_READY")
        raise errors.FailedPrecondition(
            f"{model.name} is {model_pb2.TrainedModel.State.Name(model.state)}: train the result again"
        )

    async def fetch(self, services: Services, model: model_pb2.TrainedModel, path: Path) -> None:
        """A READY model's file, checked by sha256 and kind, into `path`."""
        self._ready(model)
        artifact = await services.read_artifact(model.artifact, path, expected_sha256=model.artifact_sha256)
        if artifact.kind != MODEL_KIND:
            raise errors.FailedPrecondition(f"{model.artifact} is a {artifact.kind}, not a model file")

    async def load(self, services: Services, model: model_pb2.TrainedModel) -> Served:
        """A READY model held by a worker, from the cache or from storage
        (checked by sha256 here, by its seal in the worker)."""
        self._ready(model)
        key = (services.tenant, model.name, model.artifact_sha256)
        cached = self.cache.get(key)
        if cached is not None and cached.alive:
            self.cache.move_to_end(key)
            return cached
        self.cache.pop(key, None)
        folder = Path(tempfile.mkdtemp(prefix="load-", dir=self.folder))
        try:
            path = folder / "model.joblib"
            await self.fetch(services, model, path)
            served = await Served.load(
                model.name,
                path,
                self.key,
                self.settings.runner_train_time_limit_seconds,
                self.settings.runner_worker_memory_mb * 2**20,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        served.sha256 = model.artifact_sha256
        self.cache[key] = served
        while len(self.cache) > self.settings.runner_model_cache:
            (tenant, name, _), evicted = self.cache.popitem(last=False)
            if self.by_name.get((tenant, name)) is evicted:
                del self.by_name[tenant, name]
            evicted.close()
        return served

    async def served(self, services: Services, name: str) -> Served:
        """The worker holding model `name` for Predict. What storage said of
        the model is trusted for MODEL_RECHECK_SECONDS: a call in that time
        neither asks storage nor checks the file again (it is checked when
        its worker loads it)."""
        key = (services.tenant, name)
        held = self.by_name.get(key)
        if held is not None and held.alive and time.monotonic() - held.checked < MODEL_RECHECK_SECONDS:
            if (entry := (*key, held.sha256)) in self.cache:
                self.cache.move_to_end(entry)
            return held
        try:
            model = await services.get_trained_model(name)
        except errors.AutoMLError:
            self.by_name.pop(key, None)  # gone, or storage does not answer: ask again next time
            raise
        served = await self.load(services, model)
        served.checked = time.monotonic()
        self.by_name[key] = served
        return served

    # ------------------------------------------------------------- testing

    async def test(self, services: Services, name: str) -> model_pb2.HoldoutEvaluation:
        """Score a READY model on the holdout, in a worker process that reads
        the holdout rows itself."""
        model = await services.get_trained_model(name)
        if model.includes_holdout:
            raise errors.FailedPrecondition(
                f"{name} was fitted on the holdout rows too (include_holdout): its holdout score would flatter it; "
                "test it on data of your own with Predict, or train the result without include_holdout"
            )
        folder = Path(tempfile.mkdtemp(prefix="test-", dir=self.folder))
        try:
            await self.fetch(services, model, folder / "model.joblib")
            experiment, dataset, split = await self.recorded(services, model.run, folder)
            job = {"model_path": str(folder / "model.joblib"), "key": self.key}
            done = await self._in_worker("test", services, model, dataset, experiment, folder, job)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        check_split(done["holdout_digest"], dataset, split, model.run)
        evaluation = model_pb2.HoldoutEvaluation.FromString(done["evaluation"])
        await services.update_trained_model(
            model_pb2.TrainedModel(name=name, holdout_evaluation=evaluation), ["holdout_evaluation"]
        )
        tested = event_pb2.ModelTested(trained_model=name, evaluation=evaluation)
        await services.publish([event(model, model_tested=tested)])
        return evaluation

    # ---------------------------------------------------------- predicting

    async def predict(self, services: Services, request: model_pb2.PredictRequest) -> model_pb2.PredictResponse:
        served = await self.served(services, request.name)
        loaded = served.loaded
        kind = request.WhichOneof("input")
        X: pd.DataFrame | predicting.Columns | None = None
        if kind == "csv":
            options = request.csv_options if request.HasField("csv_options") else None
            if (quick := predicting.quick_csv(request.csv, options, loaded)) is not None:
                X = predicting.quick_columns(*quick, loaded)
            if X is None:
                frame = await asyncio.to_thread(predicting.frame_from_csv, request.csv, options, loaded)
                X = predicting.features(frame, loaded, kind)
        elif kind == "records":
            X = self._records(request.records, loaded, kind)
        else:
            raise InvalidArgument.field("input", "required: csv or records")
        predictions = await served.predict(X)
        return model_pb2.PredictResponse(classes=loaded.labels, predictions=predictions)

    @staticmethod
    def _records(
        message: model_pb2.PredictRecords, loaded: predicting.Loaded, field: str, first_row: int = 0
    ) -> pd.DataFrame | predicting.Columns:
        """The model's features of Struct rows: small ones in the common forms
        on the quick path, the rest (and every refusal) through pandas."""
        rows = predicting.quick_records(message)
        if rows is not None and (X := predicting.quick_columns(None, rows, loaded)) is not None:
            return X
        frame = predicting.frame_from_records(records(message))
        return predicting.features(frame, loaded, field, first_row=first_row)

    async def predict_stream(
        self, services: Services, requests: AsyncIterator[model_pb2.PredictStreamRequest]
    ) -> AsyncIterator[model_pb2.PredictStreamResponse]:
        """Records are answered message by message; CSV chunks go to a file
        (any cut is allowed, quoted line breaks included) and are answered in
        blocks once the file is complete. Memory stays bounded either way."""
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("content") != "header":
            raise InvalidArgument.field("header", "the first message must carry the header")
        header = first.header
        served = await self.served(services, header.name)
        loaded = served.loaded
        folder = Path(tempfile.mkdtemp(prefix="predict-", dir=self.folder))
        rows_done = 0
        csv = folder / "input.csv"
        try:
            with csv.open("wb") as sink:
                async for message in requests:
                    kind = message.WhichOneof("content")
                    if kind == "csv_chunk":
                        sink.write(message.csv_chunk)
                    elif kind == "records":
                        X = self._records(message.records, loaded, "records", first_row=rows_done)
                        answers = await served.predict(X)
                        yield self._block(loaded, rows_done, answers)
                        rows_done += len(answers)
                    else:
                        raise InvalidArgument.field("header", "only the first message carries a header")
            if csv.stat().st_size:
                if rows_done:
                    raise InvalidArgument.field("csv_chunk", "send CSV chunks or records, not both")
                options = header.csv_options if header.HasField("csv_options") else None
                async for block in self._csv_blocks(csv, options, served):
                    yield block
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def _csv_blocks(
        self, path: Path, options: c.CsvOptions | None, served: Served
    ) -> AsyncIterator[model_pb2.PredictStreamResponse]:
        loaded = served.loaded
        if options is None or options.ByteSize() == 0:
            options = c.CsvOptions(**loaded.csv_options)
        try:
            reader = problem.read_csv(path, options, dtype=str, chunksize=STREAM_BLOCK_ROWS)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument.field("csv_chunk", f"cannot be read as CSV: {exc}") from None
        done = 0
        with reader:
            while True:
                try:
                    frame = await asyncio.to_thread(next, reader, None)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise InvalidArgument.field("csv_chunk", f"cannot be read as CSV: {exc}") from None
                if frame is None:
                    return
                X = predicting.features(frame, loaded, "csv_chunk", first_row=done)
                answers = await served.predict(X)
                yield self._block(loaded, done, answers)
                done += len(answers)

    @staticmethod
    def _block(
        loaded: predicting.Loaded, first_row: int, answers: list[model_pb2.Prediction]
    ) -> model_pb2.PredictStreamResponse:
        block = model_pb2.PredictStreamResponse(first_row=first_row, predictions=answers)
        if first_row == 0:
            block.classes.extend(loaded.labels)
        return block

    async def close(self) -> None:
        for task in list(self.training.values()):
            task.cancel()
        for served in self.cache.values():
            served.close()
        self.cache.clear()
        self.by_name.clear()


def check_split(digest: str, dataset: dataset_pb2.Dataset, split: dict[str, Any], run: str) -> None:
    """The rows read now must be the ones the run's search was split on."""
    if digest != split.get("holdout_sha256") or dataset.sha256 != split.get("dataset_sha256"):
        raise errors.FailedPrecondition(
            f"the rows of {run} can no longer be split as they were for its search (data or split procedure "
            "changed): start a new run"
        )


def records(message: model_pb2.PredictRecords) -> list[dict[str, object]]:
    """The rows as dicts; a row with a value JSON has no form for (NaN,
    Infinity) is the caller's INVALID_ARGUMENT, naming the row (was INTERNAL:
    found by fuzzing)."""
    rows = []
    for position, row in enumerate(message.rows):
        try:
            rows.append(json_format.MessageToDict(row))
        except (ValueError, TypeError, json_format.Error) as exc:
            raise InvalidArgument.field(
                f"records.rows[{position}]", f"not a JSON object: {str(exc)[:200]}; send missing values as null"
            ) from None
    return rows


def event(model: model_pb2.TrainedModel, **payload: object) -> event_pb2.Event:
    return run_event(model.run, model.experiment, **payload)
