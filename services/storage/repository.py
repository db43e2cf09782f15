"""The storage domain: every read and write of metadata, on any SQL backend.

Plain Python over SQLAlchemy; knows nothing of gRPC. Every method is confined
to one tenant (ALL_TENANTS only where a docstring says so), raises
automl.common.errors for what a caller can act on, and runs in one transaction.
Nested documents (CSV options, column profiles, stop conditions, fold scores,
evaluations) are stored as JSON in the proto3 JSON mapping of their message.
Per-tenant quotas (datasets, stored bytes, active runs) are checked in the
transaction that creates, after locking the tenant's row (`_lock_tenant`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    Result,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    func,
    inspect,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from automl.common import errors, metrics, names, runs
from automl.common.errors import FieldViolation, InvalidArgument
from automl.common.runs import ACTIVE_STATES, HOLDING_STATES, TERMINAL_STATES
from automl.common.tenants import ALL_TENANTS
from automl.v1 import common_pb2 as c
from automl.v1 import event_pb2, model_pb2, run_pb2, storage_service_pb2
from services.storage import convert, query, runqueue, schema, validation
from services.storage.schema import utcnow

MAX_LOST_TRAININGS = 1000


@dataclass(frozen=True)
class StoredContent:
    """Bytes already written: inline (small) or under a blob key (large)."""

    sha256: str
    size_bytes: int
    inline_data: bytes | None = None
    blob_key: str | None = None


@dataclass(frozen=True)
class DatasetQuota:
    """A tenant's dataset limits (0: none): AUTOML_TENANT_MAX_DATASETS, AUTOML_TENANT_MAX_STORED_BYTES."""

    max_datasets: int = 0
    max_stored_bytes: int = 0


@dataclass(frozen=True)
class DatasetUsage:
    datasets: int
    stored_bytes: int


@dataclass(frozen=True)
class AppendedEvent:
    """An event of append_events as the log holds it."""

    global_sequence: int
    sequence: int
    payload: bytes
    already_stored: bool = False  # its id was stored before: nothing was appended

    @classmethod
    def of(cls, row: schema.Event, already_stored: bool = False) -> AppendedEvent:
        return cls(row.global_sequence, row.sequence, row.payload, already_stored)


@dataclass
class PageOf:
    items: list[Any]
    next_page_token: str
    total_size: int


@dataclass
class Removed:
    """Blob keys whose content rows a delete removed: the caller deletes the blobs
    after the transaction committed (a failed commit then leaves every blob)."""

    blob_keys: list[str] = field(default_factory=list)


def check_dataset_quota(usage: DatasetUsage, new_bytes: int, quota: DatasetQuota) -> None:
    """RESOURCE_EXHAUSTED when one more dataset of `new_bytes` passes a limit."""
    if quota.max_datasets and usage.datasets + 1 > quota.max_datasets:
        raise errors.ResourceExhausted(
            f"the tenant keeps {usage.datasets:,} datasets, the most AUTOML_TENANT_MAX_DATASETS "
            f"({quota.max_datasets:,}) allows: delete datasets it no longer needs, or ask the operator to raise it"
        )
    if quota.max_stored_bytes and usage.stored_bytes + new_bytes > quota.max_stored_bytes:
        raise errors.ResourceExhausted(
            f"this file ({new_bytes:,} bytes) would take the tenant's datasets to "
            f"{usage.stored_bytes + new_bytes:,} bytes, over AUTOML_TENANT_MAX_STORED_BYTES "
            f"({quota.max_stored_bytes:,}): delete datasets it no longer needs, or ask the operator to raise it"
        )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class MetadataStore:
    """All metadata of the suite, in one SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # A SQLite file answers a read by key in microseconds and, in WAL mode,
        # a reader never waits for the writer: such reads may run on the caller's
        # thread (the servicer's event loop) instead of a worker thread.
        database = engine.url.database
        self.reads_by_key_inline = engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"
        self._leaderboard_pages = LeaderboardPages()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # ------------------------------------------------------------------- quotas

    def _lock_tenant(self, session: Session, tenant: str) -> None:
        """Hold the tenant's lock row until the transaction ends. Called before a
        quota is counted: a concurrent creation for the same tenant waits here
        until this one commits, then counts it. An UPDATE, not SELECT ... FOR
        UPDATE, which SQLite ignores: any write takes SQLite's write lock."""
        now = utcnow()
        locked = _dml(
            session.execute(update(schema.TenantLock).where(schema.TenantLock.tenant == tenant).values(lock_time=now))
        )
        if locked.rowcount:
            return
        try:
            with session.begin_nested():
                session.add(schema.TenantLock(tenant=tenant, lock_time=now))
        except IntegrityError:  # made meanwhile by a concurrent call: wait for its lock
            session.execute(update(schema.TenantLock).where(schema.TenantLock.tenant == tenant).values(lock_time=now))

    def dataset_usage(self, tenant: str) -> DatasetUsage:
        """How many datasets the tenant keeps and their bytes (each dataset counts its size)."""
        with self._tx() as session:
            return self._dataset_usage(session, tenant)

    def _dataset_usage(self, session: Session, tenant: str) -> DatasetUsage:
        count, size = session.execute(
            select(func.count(), func.coalesce(func.sum(schema.Dataset.size_bytes), 0)).where(
                schema.Dataset.tenant == tenant
            )
        ).one()
        return DatasetUsage(int(count or 0), int(size or 0))

    # ----------------------------------------------------------------- contents

    def _attach_content(self, session: Session, content: StoredContent) -> bool:
        """Make sure a content row exists for these bytes; True if this call added it."""
        if session.get(schema.Content, content.sha256) is not None:
            return False
        try:
            with session.begin_nested():
                session.add(
                    schema.Content(
                        sha256=content.sha256,
                        size_bytes=content.size_bytes,
                        inline_data=content.inline_data,
                        blob_key=content.blob_key,
                    )
                )
        except IntegrityError:  # the same bytes committed concurrently: reuse them
            return False
        return True

    def content(self, sha256: str) -> schema.Content:
        with self._tx() as session:
            row = session.get(schema.Content, sha256)
            if row is None:
                raise errors.DataLoss(f"content {sha256} is referenced but missing")
            return row

    def _collect_garbage(self, session: Session, shas: set[str]) -> Removed:
        """Delete content rows among `shas` nothing references any more."""
        removed = Removed()
        for sha in shas:
            used = session.scalar(
                select(func.count()).select_from(schema.Dataset).where(schema.Dataset.content_sha256 == sha)
            ) or session.scalar(
                select(func.count()).select_from(schema.Artifact).where(schema.Artifact.content_sha256 == sha)
            )
            if not used:
                row = session.get(schema.Content, sha)
                if row is not None:
                    if row.blob_key:
                        removed.blob_keys.append(row.blob_key)
                    session.delete(row)
        return removed

    # ----------------------------------------------------------------- datasets

    def create_dataset(
        self,
        tenant: str,
        *,
        display_name: str,
        description: str,
        csv_options: dict[str, Any],
        content: StoredContent,
        row_count: int,
        columns: list[dict[str, Any]],
        quota: DatasetQuota | None = None,
    ) -> tuple[schema.Dataset, bool]:
        """Store a dataset over already written bytes. Returns (dataset, content_is_new):
        when the same bytes were stored before, they are shared and the caller must
        delete the blob it just wrote. Past `quota`, RESOURCE_EXHAUSTED and nothing
        stored (the caller deletes the blob it wrote)."""
        with self._tx() as session:
            if quota is not None and (quota.max_datasets or quota.max_stored_bytes):
                self._lock_tenant(session, tenant)
                check_dataset_quota(self._dataset_usage(session, tenant), content.size_bytes, quota)
            is_new = self._attach_content(session, content)
            row = schema.Dataset(
                id=names.new_id(),
                tenant=tenant,
                display_name=display_name,
                description=description,
                csv_options=dumps(csv_options),
                content_sha256=content.sha256,
                size_bytes=content.size_bytes,
                row_count=row_count,
                columns=dumps(columns),
                create_time=utcnow(),
            )
            session.add(row)
        return row, is_new

    def get_dataset(self, tenant: str, dataset_id: str) -> schema.Dataset:
        with self._tx() as session:
            return self._dataset(session, tenant, dataset_id)

    def _dataset(self, session: Session, tenant: str, dataset_id: str) -> schema.Dataset:
        row = session.get(schema.Dataset, dataset_id)
        if row is None or row.tenant != tenant:
            raise errors.NotFound(f"datasets/{dataset_id} does not exist")
        return row

    def list_datasets(self, tenant: str, page_size: int, page_token: str, filter_text: str) -> PageOf:
        terms = query.parse_filter(filter_text, {"display_name": ":="})
        stmt = select(schema.Dataset).where(schema.Dataset.tenant == tenant)
        for term in terms:
            stmt = stmt.where(query.text_match(schema.Dataset.display_name, term))
        order = (schema.Dataset.create_time.desc(), schema.Dataset.id.desc())
        return self._page(stmt, order, page_size, page_token, f"datasets|{tenant}|{filter_text}")

    def delete_dataset(self, tenant: str, dataset_id: str, force: bool) -> Removed:
        with self._tx() as session:
            row = self._dataset(session, tenant, dataset_id)
            experiments = session.scalars(
                select(schema.Experiment).where(schema.Experiment.dataset_id == dataset_id)
            ).all()
            if experiments and not force:
                names = ", ".join(f"experiments/{e.id}" for e in experiments[:5])
                raise errors.FailedPrecondition(
                    f"datasets/{dataset_id} is used by {len(experiments)} experiment(s) ({names}); "
                    "delete them first or set force"
                )
            removed = Removed()
            for experiment in experiments:
                removed.blob_keys += self._delete_experiment(session, experiment).blob_keys
            session.delete(row)
            session.flush()
            removed.blob_keys += self._collect_garbage(session, {row.content_sha256}).blob_keys
            return removed

    # -------------------------------------------------------------- experiments

    def create_experiment(
        self,
        tenant: str,
        *,
        experiment_id: str,
        dataset_id: str,
        display_name: str,
        description: str,
        target_column: str,
        task: int,
        primary_metric: int,
        cv_folds: int,
        holdout_fraction: float,
        seed: int,
        allowed_model_families: Sequence[str],
        excluded_columns: Sequence[str],
        default_stop_conditions: dict[str, Any],
    ) -> schema.Experiment:
        """Check the experiment against its dataset's profile, fill the defaults, store it."""
        if experiment_id:
            names.check_client_id(experiment_id, "experiment_id")
        with self._tx() as session:
            dataset = self._dataset(session, tenant, dataset_id)
            columns = {col["name"]: col for col in json.loads(dataset.columns)}
            resolved_task, metric = validation.check_problem(
                columns, target_column, task, primary_metric, excluded_columns, dataset.row_count
            )
            violations = validation.check_search_settings(cv_folds, holdout_fraction, allowed_model_families)
            violations += validation.check_stop_conditions(
                default_stop_conditions, "experiment.default_stop_conditions"
            )
            if violations:
                raise InvalidArgument.of(violations)
            now = utcnow()
            row = schema.Experiment(
                id=experiment_id or names.new_id(),
                tenant=tenant,
                dataset_id=dataset_id,
                display_name=display_name or f"{target_column} on {dataset.display_name}"[:256],
                description=description,
                target_column=target_column,
                task=task or c.TASK_AUTO,
                resolved_task=resolved_task,
                primary_metric=metric,
                cv_folds=cv_folds or 5,
                holdout_fraction=holdout_fraction or 0.2,
                seed=seed,
                allowed_model_families=dumps(list(allowed_model_families)),
                excluded_columns=dumps(list(excluded_columns)),
                default_stop_conditions=dumps(default_stop_conditions),
                create_time=now,
                update_time=now,
            )
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                raise errors.AlreadyExists(f"experiments/{experiment_id} already exists") from None
            return row

    def get_experiment(self, tenant: str, experiment_id: str) -> tuple[schema.Experiment, int]:
        """The experiment and its number of runs."""
        with self._tx() as session:
            row = self._experiment(session, tenant, experiment_id)
            return row, self._run_count(session, row.pk)

    def _experiment(self, session: Session, tenant: str, experiment_id: str) -> schema.Experiment:
        row = session.scalar(
            select(schema.Experiment).where(schema.Experiment.tenant == tenant, schema.Experiment.id == experiment_id)
        )
        if row is None:
            raise errors.NotFound(f"experiments/{experiment_id} does not exist")
        return row

    def _run_count(self, session: Session, experiment_pk: int) -> int:
        return (
            session.scalar(
                select(func.count()).select_from(schema.Run).where(schema.Run.experiment_pk == experiment_pk)
            )
            or 0
        )

    def list_experiments(self, tenant: str, page_size: int, page_token: str, filter_text: str) -> PageOf:
        """A page of (experiment, run count) pairs, newest first."""
        terms = query.parse_filter(filter_text, {"dataset": "=", "display_name": ":=", "task": "="})
        stmt = select(schema.Experiment).where(schema.Experiment.tenant == tenant)
        for term in terms:
            if term.key == "dataset":
                stmt = stmt.where(schema.Experiment.dataset_id == names.parse(term.value, "datasets", "filter"))
            elif term.key == "task":
                stmt = stmt.where(schema.Experiment.resolved_task == query.enum_value(c.Task, term.value))
            else:
                stmt = stmt.where(query.text_match(schema.Experiment.display_name, term))
        order = (schema.Experiment.create_time.desc(), schema.Experiment.pk.desc())
        result = self._page(stmt, order, page_size, page_token, f"experiments|{tenant}|{filter_text}")
        with self._tx() as session:
            result.items = [(row, self._run_count(session, row.pk)) for row in result.items]
        return result

    MUTABLE_EXPERIMENT_FIELDS = ("display_name", "description", "default_stop_conditions")

    def update_experiment(
        self, tenant: str, experiment_id: str, paths: Sequence[str], values: dict[str, Any]
    ) -> tuple[schema.Experiment, int]:
        """Change the mutable fields named in `paths` (an update mask) to `values`."""
        if not paths:
            raise InvalidArgument.field("update_mask", "required: name the fields to change, e.g. display_name")
        immutable = [p for p in paths if p.split(".")[0] not in self.MUTABLE_EXPERIMENT_FIELDS]
        if immutable:
            raise InvalidArgument.field(
                "update_mask",
                f"{', '.join(immutable)} cannot change; mutable: {', '.join(self.MUTABLE_EXPERIMENT_FIELDS)}",
            )
        with self._tx() as session:
            row = self._experiment(session, tenant, experiment_id)
            for path in {p.split(".")[0] for p in paths}:
                if path == "display_name":
                    validation.check_display_name(values["display_name"], "experiment.display_name", required=True)
                    row.display_name = values["display_name"]
                elif path == "description":
                    validation.check_description(values["description"], "experiment.description")
                    row.description = values["description"]
                else:
                    violations = validation.check_stop_conditions(values[path], "experiment.default_stop_conditions")
                    if violations:
                        raise InvalidArgument.of(violations)
                    row.default_stop_conditions = dumps(values[path])
            row.update_time = utcnow()
            return row, self._run_count(session, row.pk)

    def delete_experiment(self, tenant: str, experiment_id: str) -> Removed:
        with self._tx() as session:
            return self._delete_experiment(session, self._experiment(session, tenant, experiment_id))

    def _delete_experiment(self, session: Session, experiment: schema.Experiment) -> Removed:
        active = session.scalars(
            select(schema.Run.id).where(schema.Run.experiment_pk == experiment.pk, schema.Run.state.in_(ACTIVE_STATES))
        ).all()
        if active:
            raise errors.FailedPrecondition(
                f"experiments/{experiment.id} has an active run (runs/{active[0]}): stop it first"
            )
        # Subqueries, not lists of ids: an experiment can own more artifacts than
        # SQL Server takes parameters in one statement (2,100).
        models = select(schema.TrainedModel.artifact_id).where(
            schema.TrainedModel.experiment_pk == experiment.pk, schema.TrainedModel.artifact_id.is_not(None)
        )
        predictions = (
            select(schema.ModelResult.predictions_artifact_id)
            .join(schema.Run, schema.Run.id == schema.ModelResult.run_id)
            .where(schema.Run.experiment_pk == experiment.pk, schema.ModelResult.predictions_artifact_id.is_not(None))
        )
        owned = schema.Artifact.id.in_(models) | schema.Artifact.id.in_(predictions)
        shas = set(session.scalars(select(schema.Artifact.content_sha256).where(owned).distinct()).all())
        session.execute(delete(schema.Artifact).where(owned))
        # Runs cascade to results, metrics, trained models and events in the database.
        session.execute(delete(schema.Run).where(schema.Run.experiment_pk == experiment.pk))
        session.delete(experiment)
        session.flush()
        return self._collect_garbage(session, shas)

    # --------------------------------------------------------------------- runs

    def create_run(
        self,
        tenant: str,
        experiment_id: str,
        stop_conditions: dict[str, Any] | None,
        parallel_workers: int,
        max_active_runs: int = 0,
    ) -> schema.Run:
        """A PENDING run; without stop conditions it takes the experiment's defaults.
        RESOURCE_EXHAUSTED when the tenant has `max_active_runs` active already
        (0: no limit), counted under the tenant's lock."""
        with self._tx() as session:
            experiment = self._experiment(session, tenant, experiment_id)
            conditions = stop_conditions if stop_conditions else json.loads(experiment.default_stop_conditions)
            violations = validation.check_stop_conditions(conditions, "stop_conditions", require_bound=True)
            if not 0 <= parallel_workers <= 64:
                violations.append(FieldViolation("parallel_workers", f"{parallel_workers}: use 1 to 64 (0: cores)"))
            if violations:
                raise InvalidArgument.of(violations)
            if max_active_runs:
                self._lock_tenant(session, tenant)
                active = session.scalar(
                    select(func.count())
                    .select_from(schema.Run)
                    .where(schema.Run.tenant == tenant, schema.Run.state.in_(HOLDING_STATES))
                )
                if (active or 0) >= max_active_runs:
                    raise errors.ResourceExhausted(
                        f"the tenant has {active:,} active runs (PENDING, RUNNING or STOPPING), the most "
                        f"AUTOML_TENANT_MAX_ACTIVE_RUNS ({max_active_runs:,}) allows: wait for one to end or stop "
                        "one, or ask the operator to raise it"
                    )
            row = schema.Run(
                id=names.new_id(),
                tenant=tenant,
                experiment_pk=experiment.pk,
                state=c.RUN_STATE_PENDING,
                stop_conditions=dumps(conditions),
                parallel_workers=parallel_workers,
                primary_metric=experiment.primary_metric,
                create_time=utcnow(),
            )
            session.add(row)
            session.flush()
            return row

    # The hot reads (GetRun, ListRuns, ListRunRecords, GetLeaderboard, LookupApiKey)
    # are Core selects of the columns they show, read on a pooled connection and
    # converted straight into messages: no Session, no ORM objects. Their
    # fixed statements are built once (SQLAlchemy then reuses their compiled
    # form without recomputing their cache key).

    def get_run(self, tenant: str, run_id: str) -> run_pb2.Run:
        """The run as a message (its experiment's name, a QUEUED run's place)."""
        with self.engine.connect() as connection:
            row = connection.execute(GET_RUN, {"run_id": run_id}).first()
            if row is None or (tenant != ALL_TENANTS and row.tenant != tenant):
                raise errors.NotFound(f"runs/{run_id} does not exist")
            positions = _queue_positions(connection, (row,))
        return convert.run(row, row.experiment_id or "", positions.get(row.id, 0))

    def _place(self, rows: Sequence[schema.Run], session: Session) -> None:
        """Set queue_position on the QUEUED ones among `rows` (reads the whole
        queue, so only when one of them is QUEUED)."""
        positions = _queue_positions(session, rows)
        for row in rows:
            if row.state == c.RUN_STATE_QUEUED:
                row.queue_position = positions.get(row.id, 0)

    def _run(self, session: Session, tenant: str, run_id: str, lock: bool = False) -> schema.Run:
        stmt = select(schema.Run).where(schema.Run.id == run_id)
        if lock:
            stmt = stmt.with_for_update()
        row = session.scalar(stmt)
        if row is None or (tenant != ALL_TENANTS and row.tenant != tenant):
            raise errors.NotFound(f"runs/{run_id} does not exist")
        return row

    def _experiment_id(self, session: Session, experiment_pk: int) -> str:
        return session.scalar(select(schema.Experiment.id).where(schema.Experiment.pk == experiment_pk)) or ""

    def list_runs(self, tenant: str, page_size: int, page_token: str, filter_text: str) -> PageOf:
        """A page of run messages, newest first. ALL_TENANTS allowed."""
        page, rows, positions = self._run_rows(tenant, page_size, page_token, filter_text, since_best=False)
        page.items = [convert.run(row, row.experiment_id, positions.get(row.id, 0)) for row in rows]
        return page

    def list_run_records(self, tenant: str, page_size: int, page_token: str, filter_text: str) -> PageOf:
        """A page of RunRecord messages (run, tenant, models since best), newest
        first: what the gateway's supervisor checks. ALL_TENANTS allowed."""
        page, rows, positions = self._run_rows(tenant, page_size, page_token, filter_text, since_best=True)
        page.items = [
            storage_service_pb2.RunRecord(
                run=convert.run(row, row.experiment_id, positions.get(row.id, 0)),
                tenant=row.tenant,
                models_since_best=_since_best(row),
            )
            for row in rows
        ]
        return page

    def _run_rows(
        self, tenant: str, page_size: int, page_token: str, filter_text: str, since_best: bool
    ) -> tuple[PageOf, Sequence[Row[Any]], dict[str, int]]:
        """A page of run rows (RUN_COLUMNS, and up_to_best when `since_best`),
        newest first, with the total (the PageOf's items left for the caller's
        messages), and the QUEUED runs' positions by id."""
        terms = query.parse_filter(filter_text, {"experiment": "=", "state": "="})
        scope = f"runs|{tenant}|{filter_text}"
        page = query.page(page_size, page_token, scope)
        runs, experiments = RUNS.c, EXPERIMENTS.c
        where: list[ColumnElement[bool]] = []
        if tenant != ALL_TENANTS:
            where.append(runs.tenant == tenant)
        for term in terms:
            if term.key == "experiment":
                where.append(experiments.id == names.parse(term.value, "experiments", "filter"))
            else:
                where.append(runs.run_state == query.enum_value(c.RunState, term.value))
        joined = RUNS.join(EXPERIMENTS, experiments.pk == runs.experiment_pk)
        if since_best:
            source = joined.outerjoin(BEST, BEST.c.id == runs.best_result_id)
            stmt = select(*RUN_COLUMNS, UP_TO_BEST).select_from(source)
        else:
            stmt = select(*RUN_COLUMNS).select_from(joined)
        order = (runs.create_time.desc(), runs.id.desc())
        with self.engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(joined).where(*where)) or 0
            rows = connection.execute(paged(stmt.where(*where), order, page)).all()
            positions = _queue_positions(connection, rows)
        return PageOf([], query.next_token(page, len(rows), total, scope), total), rows, positions

    def update_run_state(
        self,
        tenant: str,
        run_id: str,
        *,
        expected: Sequence[int],
        state: int,
        stop_reason: int = 0,
        status_message: str = "",
        runner_id: str = "",
        add_notes: Sequence[str] = (),
        takeover: bool = False,
        max_queued_runs: int = 0,
    ) -> tuple[schema.Run, str]:
        """Compare-and-set of the run's state: FAILED_PRECONDITION unless it is in
        `expected`, and unless automl.common.runs allows the change from every
        state of `expected` (a caller asking for a change that is never allowed
        is told so whatever state the run is in). `add_notes` go to the run's
        notes in the same transaction.

        Into QUEUED from PENDING: RESOURCE_EXHAUSTED when the tenant has
        `max_queued_runs` queued already (0: no limit). Into QUEUED from
        RUNNING or STOPPING: the runner lets go of it; its search time (from its
        claim to its last heartbeat for a `takeover`, to now otherwise) adds to
        prior_search_seconds, and a takeover counts in takeovers. Into RUNNING:
        the claim (claim_time, heartbeat_time; start_time the first time)."""
        if not expected:
            raise InvalidArgument.field("expected_states", "required: the states the run may be in")
        if state == c.RUN_STATE_UNSPECIFIED:
            raise InvalidArgument.field("state", "required")
        if state not in runs.STATES:
            raise InvalidArgument.field("state", f"{state} is not a RunState")
        if unknown := [s for s in expected if s not in runs.STATES]:
            raise InvalidArgument.field("expected_states", f"{unknown[0]} is not a state a run can be in")
        for asked in expected:
            runs.check_change(asked, state, f"runs/{run_id}")
        validation.check_notes(add_notes, "add_notes")
        with self._tx() as session:
            # The compare-and-set is one conditional UPDATE: atomic on every
            # backend (SQLite ignores SELECT ... FOR UPDATE, so a read-then-write
            # let two runners claim one run). Once it matched, the row is this
            # transaction's until commit.
            # Setting the state to itself takes the row (and, on SQLite, the
            # database's write lock) while the previous state is read below.
            claimed = _dml(
                session.execute(
                    update(schema.Run)
                    .where(schema.Run.id == run_id, schema.Run.state.in_(list(expected)))
                    .where(true() if tenant == ALL_TENANTS else schema.Run.tenant == tenant)
                    .values(state=schema.Run.state)
                    .execution_options(synchronize_session=False)
                )
            )
            row = self._run(session, tenant, run_id, lock=True)
            if claimed.rowcount != 1:
                raise errors.FailedPrecondition(
                    f"runs/{run_id} is {c.RunState.Name(row.state)}, not "
                    + " or ".join(c.RunState.Name(s) for s in expected)
                )
            session.refresh(row)
            now = utcnow()
            previous = row.state
            # The state the row really had, which the checks of `expected` stand
            # for only as long as the compare-and-set above matches on it.
            runs.check_change(previous, state, f"runs/{run_id}")
            if state == c.RUN_STATE_QUEUED:
                self._enqueue(session, row, previous, now, takeover, max_queued_runs)
            row.state = state
            if stop_reason and not row.stop_reason:
                row.stop_reason = stop_reason
            if status_message:
                row.status_message = status_message
            if runner_id:
                row.runner_id = runner_id
            if state == c.RUN_STATE_RUNNING:
                row.start_time = row.start_time or now
                row.claim_time = now
                row.heartbeat_time = now
            if state in TERMINAL_STATES:
                row.end_time = now
            _append_notes(row, add_notes)
            self._place([row], session)
            return row, self._experiment_id(session, row.experiment_pk)

    def _enqueue(
        self, session: Session, row: schema.Run, previous: int, now: Any, takeover: bool, max_queued_runs: int
    ) -> None:
        if previous == c.RUN_STATE_PENDING and max_queued_runs:
            self._lock_tenant(session, row.tenant)
            queued = session.scalar(
                select(func.count())
                .select_from(schema.Run)
                .where(schema.Run.tenant == row.tenant, schema.Run.state == c.RUN_STATE_QUEUED)
            )
            if (queued or 0) >= max_queued_runs:
                raise errors.ResourceExhausted(
                    f"every runner is busy and the tenant has {queued:,} runs queued, the most "
                    f"AUTOML_TENANT_MAX_QUEUED_RUNS ({max_queued_runs:,}) allows: wait for one to start or stop one"
                )
        if previous in (c.RUN_STATE_RUNNING, c.RUN_STATE_STOPPING):
            claimed = row.claim_time or row.start_time or now
            used_until = (row.heartbeat_time or claimed) if takeover else now
            row.prior_search_seconds = (row.prior_search_seconds or 0.0) + max(
                0.0, (used_until - claimed).total_seconds()
            )
            row.runner_id = ""
            if takeover:
                row.takeovers = (row.takeovers or 0) + 1
        row.queue_time = now

    def heartbeat_run(
        self, tenant: str, run_id: str, runner_id: str, add_notes: Sequence[str] = ()
    ) -> tuple[schema.Run, str]:
        """Record that the runner is alive; `add_notes` go to the run's notes."""
        validation.check_notes(add_notes, "add_notes")
        with self._tx() as session:
            row = self._run(session, tenant, run_id, lock=True)
            if row.runner_id != runner_id:
                raise errors.FailedPrecondition(f"runs/{run_id} belongs to runner {row.runner_id or '(none)'}")
            if row.state in TERMINAL_STATES:
                raise errors.FailedPrecondition(f"runs/{run_id} already ended ({c.RunState.Name(row.state)})")
            row.heartbeat_time = utcnow()
            _append_notes(row, add_notes)
            return row, self._experiment_id(session, row.experiment_pk)

    # ------------------------------------------------------------ model results

    def create_results(
        self, tenant: str, run_id: str, results: Sequence[dict[str, Any]]
    ) -> tuple[list[schema.ModelResult], schema.Run]:
        """Store a batch of a run's results and update its counters and best result.

        Each dict has the ModelResult fields (position, job_id, model_family,
        pipeline_steps, model_json, outcome, error_message, folds, metrics (a list
        of {metric, mean, std, train_mean}), primary_score, folds_run, fit/score
        times, sample_rows, job_type, ensemble_members (a list of {modelResult,
        index, weight}), predictions_artifact_id (an artifact of the tenant's)).
        Position 0 means "next". An interrupted result (a normal stop of the
        run) counts in models_stopped, not models_failed."""
        if not 1 <= len(results) <= 1000:
            raise InvalidArgument.field("model_results", f"send 1 to 1000 results per batch, not {len(results)}")
        with self._tx() as session:
            run = self._run(session, tenant, run_id, lock=True)
            if run.state in TERMINAL_STATES:
                raise errors.FailedPrecondition(f"runs/{run_id} already ended; its results are final")
            if run.state == c.RUN_STATE_QUEUED:  # a lost runner's late result: the run is no one's now
                raise errors.FailedPrecondition(f"runs/{run_id} is QUEUED: no runner holds it")
            next_position = (
                session.scalar(select(func.max(schema.ModelResult.position)).where(schema.ModelResult.run_id == run_id))
                or 0
            ) + 1
            rows = []
            metric_rows = []
            known_best_position: int | None = None

            def best_position(run: schema.Run) -> int:
                """The position of the best result so far, read once a tie needs it."""
                nonlocal known_best_position
                if known_best_position is None:
                    best = session.get(schema.ModelResult, run.best_result_id) if run.best_result_id else None
                    known_best_position = best.position if best is not None else 2**31
                return known_best_position

            for i, result in enumerate(results):
                validation.check_result(result, f"model_results[{i}]")
                succeeded = result["outcome"] == run_pb2.ModelResult.OUTCOME_SUCCEEDED
                score = result.get("primary_score")
                position = result.get("position") or next_position
                new_best = (
                    succeeded
                    and score is not None
                    and (
                        metrics.is_better(score, run.best_score, run.primary_metric)
                        # A tie goes to the earlier position, as the leaderboard orders
                        # ties: results of parallel workers arrive in any order.
                        or (score == run.best_score and position < best_position(run))
                    )
                )
                row = schema.ModelResult(
                    id=names.new_id(),
                    run_id=run_id,
                    tenant=tenant,
                    position=position,
                    job_id=result.get("job_id", ""),
                    model_family=result.get("model_family", ""),
                    pipeline_steps=dumps(result.get("pipeline_steps", [])),
                    model_json=result.get("model_json", ""),
                    outcome=result["outcome"],
                    error_message=result.get("error_message", ""),
                    folds=dumps(result.get("folds", [])),
                    primary_score=score if succeeded else None,
                    folds_run=result.get("folds_run", 0),
                    fit_time_seconds=result.get("fit_time_seconds", 0.0),
                    score_time_seconds=result.get("score_time_seconds", 0.0),
                    was_new_best=new_best,
                    create_time=utcnow(),
                    sample_rows=result.get("sample_rows") or None,
                    job_type=result.get("job_type") or None,
                    ensemble_members=dumps(members) if (members := result.get("ensemble_members")) else None,
                    predictions_artifact_id=self._own_artifact(
                        session,
                        tenant,
                        result.get("predictions_artifact_id"),
                        f"model_results[{i}].predictions_artifact",
                    ),
                )
                next_position = max(next_position, row.position) + 1
                rows.append(row)
                if succeeded:
                    run.models_evaluated += 1
                    metric_rows += [
                        schema.ModelResultMetric(
                            result_id=row.id,
                            metric=m["metric"],
                            run_id=run_id,
                            mean=m["mean"],
                            std=m.get("std", 0.0),
                            train_mean=m.get("train_mean"),
                        )
                        for m in result.get("metrics", [])
                    ]
                elif result["outcome"] == run_pb2.ModelResult.OUTCOME_INTERRUPTED:
                    run.models_stopped += 1
                else:
                    run.models_failed += 1
                if new_best:
                    run.best_score = score
                    run.best_result_id = row.id
                    known_best_position = row.position
            try:
                with session.begin_nested():
                    session.add_all(rows)
                    session.flush()
                    session.add_all(metric_rows)
                    session.flush()
            except IntegrityError:
                raise errors.AlreadyExists(f"runs/{run_id} already has a result at one of these positions") from None
            return rows, run

    def get_result(self, tenant: str, result_id: str) -> tuple[schema.ModelResult, list[schema.ModelResultMetric]]:
        with self._tx() as session:
            row = session.get(schema.ModelResult, result_id)
            if row is None or row.tenant != tenant:
                raise errors.NotFound(f"modelResults/{result_id} does not exist")
            return row, self._metrics_of(session, [row.id]).get(row.id, [])

    def _metrics_of(self, session: Session, result_ids: list[str]) -> dict[str, list[schema.ModelResultMetric]]:
        by_result: dict[str, list[schema.ModelResultMetric]] = {rid: [] for rid in result_ids}
        for chunk_start in range(0, len(result_ids), 500):  # bounded IN lists
            chunk = result_ids[chunk_start : chunk_start + 500]
            stmt = select(schema.ModelResultMetric).where(schema.ModelResultMetric.result_id.in_(chunk))
            for metric_row in session.scalars(stmt.order_by(schema.ModelResultMetric.metric)):
                by_result[metric_row.result_id].append(metric_row)
        return by_result

    def list_results(self, tenant: str, run_id: str, page_size: int, page_token: str, filter_text: str) -> PageOf:
        """A page of (result, metrics) pairs in evaluation order."""
        terms = query.parse_filter(filter_text, {"outcome": "="})
        with self._tx() as session:
            self._run(session, tenant, run_id)
        stmt = select(schema.ModelResult).where(schema.ModelResult.run_id == run_id)
        for term in terms:
            stmt = stmt.where(schema.ModelResult.outcome == query.enum_value(run_pb2.ModelResult.Outcome, term.value))
        result = self._page(
            stmt, (schema.ModelResult.position,), page_size, page_token, f"results|{run_id}|{filter_text}"
        )
        with self._tx() as session:
            found = self._metrics_of(session, [r.id for r in result.items])
        result.items = [(r, found[r.id]) for r in result.items]
        return result

    def leaderboard(
        self, tenant: str, run_id: str, metric: c.Metric, page_size: int, page_token: str
    ) -> tuple[PageOf, c.Metric]:
        """Succeeded results ranked by `metric`'s mean (0: the run's primary metric).
        Returns a page of LeaderboardEntry messages and the metric used. Ties share
        the better rank. One connection; the large model_json and folds columns
        are not read (the leaderboard shows the BASIC view).

        A page once read is kept (LeaderboardPages) under the number of ranked
        results: a run's results are only ever appended, each with its metric rows
        in one transaction, and commits are ordered, so a count names one set of
        results. A running run's page is then read again only when a result came."""
        with self.engine.connect() as connection:
            run = connection.execute(RUN_HEAD, {"run_id": run_id}).first()
            if run is None or (tenant != ALL_TENANTS and run.tenant != tenant):
                raise errors.NotFound(f"runs/{run_id} does not exist")
            metric = metric or cast(c.Metric, run.primary_metric)  # the enum's number, as stored
            scope = f"leaderboard|{run_id}|{metric}"
            page = query.page(page_size, page_token, scope)
            ranked = {"run_id": run_id, "metric": metric}
            # Served by the index on (run_id, metric, mean) alone.
            total = connection.scalar(RANKED_COUNT, ranked) or 0
            key = (run_id, metric, page.offset, page.size, total)
            entries = self._leaderboard_pages.get(key)
            if entries is None:
                entries = _leaderboard_entries(connection, ranked, page)
                self._leaderboard_pages.put(key, entries)
        return PageOf(entries, query.next_token(page, len(entries), total, scope), total), metric

    # ---------------------------------------------------------------- artifacts

    def create_artifact(self, tenant: str, kind: str, content: StoredContent) -> tuple[schema.Artifact, bool]:
        """Store an artifact over written bytes; (artifact, content_is_new) as for datasets."""
        if not kind or len(kind) > 64:
            raise InvalidArgument.field("header.kind", "required: what the payload is, e.g. model/joblib (≤ 64 chars)")
        with self._tx() as session:
            is_new = self._attach_content(session, content)
            row = schema.Artifact(id=names.new_id(), tenant=tenant, kind=kind, content_sha256=content.sha256)
            session.add(row)
            return row, is_new

    def get_artifact(self, tenant: str, artifact_id: str) -> tuple[schema.Artifact, schema.Content]:
        with self._tx() as session:
            row = session.get(schema.Artifact, artifact_id)
            if row is None or row.tenant != tenant:
                raise errors.NotFound(f"artifacts/{artifact_id} does not exist")
            content = session.get(schema.Content, row.content_sha256)
            assert content is not None  # guaranteed by the foreign key
            return row, content

    def delete_artifact(self, tenant: str, artifact_id: str) -> Removed:
        with self._tx() as session:
            row = session.get(schema.Artifact, artifact_id)
            if row is None or row.tenant != tenant:
                raise errors.NotFound(f"artifacts/{artifact_id} does not exist")
            session.execute(
                update(schema.TrainedModel)
                .where(schema.TrainedModel.artifact_id == artifact_id)
                .values(artifact_id=None)
            )
            session.delete(row)
            session.flush()
            return self._collect_garbage(session, {row.content_sha256})

    # ----------------------------------------------------------- trained models

    def create_trained_model(self, tenant: str, result_id: str, includes_holdout: bool = False) -> schema.TrainedModel:
        """A TRAINING model for a succeeded result; `includes_holdout`: it is to
        be fitted with the holdout rows too (and can then not be tested)."""
        with self._tx() as session:
            result = session.get(schema.ModelResult, result_id)
            if result is None or result.tenant != tenant:
                raise errors.NotFound(f"modelResults/{result_id} does not exist")
            if result.outcome != run_pb2.ModelResult.OUTCOME_SUCCEEDED:
                outcome = run_pb2.ModelResult.Outcome.Name(result.outcome)
                raise errors.FailedPrecondition(f"modelResults/{result_id} did not succeed ({outcome}); train another")
            run = self._run(session, tenant, result.run_id)
            experiment_task = session.scalar(
                select(schema.Experiment.resolved_task).where(schema.Experiment.pk == run.experiment_pk)
            )
            now = utcnow()
            row = schema.TrainedModel(
                id=names.new_id(),
                tenant=tenant,
                result_id=result_id,
                run_id=run.id,
                experiment_pk=run.experiment_pk,
                state=model_pb2.TrainedModel.STATE_TRAINING,
                task=experiment_task or 0,
                create_time=now,
                update_time=now,
                includes_holdout=includes_holdout or None,
            )
            session.add(row)
            return row

    def get_trained_model(self, tenant: str, model_id: str) -> tuple[schema.TrainedModel, str]:
        """The model and its experiment's id."""
        with self._tx() as session:
            row = self._trained_model(session, tenant, model_id)
            return row, self._experiment_id(session, row.experiment_pk)

    @staticmethod
    def _own_artifact(session: Session, tenant: str, artifact_id: str | None, field: str) -> str | None:
        """An artifact id a row may point at: the tenant's own, or none."""
        if not artifact_id:
            return None
        row = session.get(schema.Artifact, artifact_id)
        if row is None or row.tenant != tenant:
            raise errors.NotFound(f"{field}: artifacts/{artifact_id} does not exist")
        return artifact_id

    def _trained_model(self, session: Session, tenant: str, model_id: str) -> schema.TrainedModel:
        row = session.get(schema.TrainedModel, model_id)
        if row is None or row.tenant != tenant:
            raise errors.NotFound(f"trainedModels/{model_id} does not exist")
        return row

    def list_trained_models(self, tenant: str, page_size: int, page_token: str, filter_text: str) -> PageOf:
        terms = query.parse_filter(filter_text, {"run": "=", "model_result": "=", "state": "="})
        stmt = select(schema.TrainedModel, schema.Experiment.id).join(
            schema.Experiment, schema.Experiment.pk == schema.TrainedModel.experiment_pk
        )
        stmt = stmt.where(schema.TrainedModel.tenant == tenant)
        for term in terms:
            if term.key == "run":
                stmt = stmt.where(schema.TrainedModel.run_id == names.parse(term.value, "runs", "filter"))
            elif term.key == "model_result":
                result_id = names.parse(term.value, "modelResults", "filter")
                stmt = stmt.where(schema.TrainedModel.result_id == result_id)
            else:
                stmt = stmt.where(
                    schema.TrainedModel.state == query.enum_value(model_pb2.TrainedModel.State, term.value)
                )
        order = (schema.TrainedModel.create_time.desc(), schema.TrainedModel.id.desc())
        return self._page(stmt, order, page_size, page_token, f"models|{tenant}|{filter_text}", rows=True)

    TRAINED_MODEL_FIELDS = (
        "state",
        "error_message",
        "feature_columns",
        "classes",
        "training_rows",
        "fit_time_seconds",
        "artifact",
        "holdout_evaluation",
    )

    def update_trained_model(
        self, tenant: str, model_id: str, paths: Sequence[str], values: dict[str, Any]
    ) -> tuple[schema.TrainedModel, str]:
        """Set the fields named in `paths`; JSON-valued ones (feature_columns, classes,
        holdout_evaluation) come as Python values, artifact as an artifact id."""
        unknown = [p for p in paths if p not in self.TRAINED_MODEL_FIELDS]
        if not paths or unknown:
            raise InvalidArgument.field("update_mask", f"use some of {', '.join(self.TRAINED_MODEL_FIELDS)}")
        with self._tx() as session:
            row = self._trained_model(session, tenant, model_id)
            if "state" in paths and row.state != model_pb2.TrainedModel.STATE_TRAINING and values["state"] != row.state:
                state = model_pb2.TrainedModel.State.Name(row.state)
                raise errors.FailedPrecondition(f"trainedModels/{model_id} is {state}: its state no longer changes")
            for path in paths:
                value = values[path]
                if path == "artifact":
                    if value:
                        artifact = session.get(schema.Artifact, value)
                        if artifact is None or artifact.tenant != tenant:
                            raise errors.NotFound(f"artifacts/{value} does not exist")
                    row.artifact_id = value or None
                elif path in ("feature_columns", "classes", "holdout_evaluation"):
                    setattr(row, path, dumps(value) if value is not None else None)
                else:
                    setattr(row, path, value)
            row.update_time = utcnow()
            return row, self._experiment_id(session, row.experiment_pk)

    def fail_lost_trainings(self, silent_since: Any, message: str) -> list[tuple[schema.TrainedModel, str]]:
        """Every tenant's TRAINING models not updated since `silent_since` (their
        runner's heartbeat stopped) become FAILED with `message`; returns them
        (at most MAX_LOST_TRAININGS per call) with their experiment ids."""
        model = schema.TrainedModel
        lost = (model.state == model_pb2.TrainedModel.STATE_TRAINING, model.update_time < silent_since)
        failed = []
        with self._tx() as session:
            ids = session.scalars(select(model.id).where(*lost).limit(MAX_LOST_TRAININGS)).all()
            for model_id in ids:
                # Conditional, one by one: a model whose runner ended it meanwhile keeps its end.
                changed = _dml(
                    session.execute(
                        update(model)
                        .where(model.id == model_id, *lost)
                        .values(state=model_pb2.TrainedModel.STATE_FAILED, error_message=message, update_time=utcnow())
                        .execution_options(synchronize_session=False)
                    )
                )
                if changed.rowcount == 1:
                    row = session.get(model, model_id)
                    assert row is not None
                    session.refresh(row)
                    failed.append((row, self._experiment_id(session, row.experiment_pk)))
        return failed

    # ------------------------------------------------------------------- events

    def append_events(self, tenant: str, events: Sequence[dict[str, Any]]) -> list[AppendedEvent]:
        """Append events ({run_id, sequence, event_type, payload, create_time,
        event_id}) in one transaction. Returns, in order, each one as stored.

        An event whose event_id the tenant's log holds already, or an earlier
        event of the call has, is not appended and takes no sequence: its
        stored row comes back (`already_stored`). Every other event must carry
        its run's next sequence counted as if the repeated events of its run
        before it in the call had been appended (the numbering of a publisher
        that could not know they were stored); it is stored without them, so
        the run's sequences stay contiguous. An event without an event_id is
        always appended."""
        if not 1 <= len(events) <= 1000:
            raise InvalidArgument.field("events", f"send 1 to 1000 events per call, not {len(events)}")
        with self._tx() as session:
            # Lock the runs first, in one order (no deadlock between two appends), then
            # look their ids up: a concurrent append of the same id to the same run waits.
            runs = {
                run_id: self._run(session, tenant, run_id, lock=True)
                for run_id in sorted({event["run_id"] for event in events})
            }
            stored = self._events_by_id(session, runs.values(), [e.get("event_id") for e in events])
            skipped: dict[str, int] = {}  # run id -> repeated events of the run so far in this call
            out: list[tuple[schema.Event, bool]] = []  # (row, whether it was stored before)
            for i, event in enumerate(events):
                run = runs[event["run_id"]]
                event_id = event.get("event_id") or None
                if event_id is not None and (run.tenant, event_id) in stored:
                    out.append((stored[run.tenant, event_id], True))
                    skipped[run.id] = skipped.get(run.id, 0) + 1
                    continue
                expected = run.last_sequence + 1
                given = event["sequence"] - skipped.get(run.id, 0)
                if given < expected:
                    raise errors.AlreadyExists(
                        f"events[{i}]: runs/{run.id} already has event {given} (next is {expected})"
                    )
                if given > expected:
                    raise errors.FailedPrecondition(
                        f"events[{i}]: runs/{run.id} expects event {expected} next, not {given}"
                    )
                run.last_sequence = expected
                payload = event["payload"]
                if event["sequence"] != expected:  # renumbered past repeated events: the payload says so too
                    message = event_pb2.Event.FromString(payload)
                    message.sequence = expected
                    payload = message.SerializeToString()
                row = schema.Event(
                    tenant=run.tenant,
                    run_id=run.id,
                    experiment_pk=run.experiment_pk,
                    sequence=expected,
                    event_type=event["event_type"],
                    payload=payload,
                    create_time=event.get("create_time") or utcnow(),
                    event_id=event_id,
                )
                session.add(row)
                out.append((row, False))
                if event_id is not None:
                    stored[run.tenant, event_id] = row
            try:
                session.flush()
            except IntegrityError:  # the same id appended concurrently to another run: the retry finds it
                raise errors.Unavailable("a concurrent append stored one of these event ids: retry") from None
            return [AppendedEvent.of(row, already_stored) for row, already_stored in out]

    def _events_by_id(
        self, session: Session, runs: Iterable[schema.Run], event_ids: Sequence[str | None]
    ) -> dict[tuple[str, str], schema.Event]:
        """The stored events of these ids, by (tenant, event id), for the runs' tenants."""
        wanted = sorted({i for i in event_ids if i})
        tenants = sorted({run.tenant for run in runs})
        found: dict[tuple[str, str], schema.Event] = {}
        for start in range(0, len(wanted), 500):  # bound parameters per statement stay few on every backend
            stmt = select(schema.Event).where(
                schema.Event.tenant.in_(tenants), schema.Event.event_id.in_(wanted[start : start + 500])
            )
            for row in session.scalars(stmt):
                found[row.tenant, cast(str, row.event_id)] = row  # selected by its event id: not None
        return found

    def list_events(
        self,
        tenant: str,
        *,
        run_id: str = "",
        experiment_id: str = "",
        after_global_sequence: int = 0,
        after_sequence: int = 0,
        event_types: Sequence[int] = (),
        page_size: int = 0,
    ) -> tuple[list[schema.Event], bool, int]:
        """Events in log order after a position: (events, has_more, first kept global
        sequence). ALL_TENANTS allowed."""
        if run_id and experiment_id:
            raise InvalidArgument.field("experiment", "set run or experiment, not both")
        if not 0 <= page_size <= 10_000:
            raise InvalidArgument.field("page_size", f"{page_size}: use 1 to 10000 (0 for 1000)")
        limit = page_size or 1000
        with self._tx() as session:
            stmt = select(schema.Event).where(schema.Event.global_sequence > after_global_sequence)
            if tenant != ALL_TENANTS:
                stmt = stmt.where(schema.Event.tenant == tenant)
            if run_id:
                self._run(session, tenant, run_id)
                stmt = stmt.where(schema.Event.run_id == run_id, schema.Event.sequence > after_sequence)
            elif experiment_id:
                experiment = self._experiment(session, tenant, experiment_id)
                stmt = stmt.where(schema.Event.experiment_pk == experiment.pk)
            if event_types:
                stmt = stmt.where(schema.Event.event_type.in_(list(event_types)))
            # One run's events: in run_sequence order, which is their log order (the run's
            # row is locked while they are appended), read straight off the unique index
            # (run_id, run_sequence) with no sort.
            order = schema.Event.sequence if run_id else schema.Event.global_sequence
            rows = session.scalars(stmt.order_by(order).limit(limit + 1)).all()
            first = session.scalar(select(func.min(schema.Event.global_sequence))) or 0
            return list(rows[:limit]), len(rows) > limit, first

    # ------------------------------------------------------------ subscriptions

    def create_subscription(self, tenant: str, fields: dict[str, Any]) -> schema.Subscription:
        """Store a subscription: run_id or experiment_id (or neither), event_types,
        webhook_url, webhook_secret, token_sha256, state."""
        with self._tx() as session:
            if fields.get("run_id"):
                self._run(session, tenant, fields["run_id"])
            if fields.get("experiment_id"):
                self._experiment(session, tenant, fields["experiment_id"])
            row = schema.Subscription(
                id=names.new_id(),
                tenant=tenant,
                run_id=fields.get("run_id", ""),
                experiment_id=fields.get("experiment_id", ""),
                event_types=dumps(list(fields.get("event_types", []))),
                webhook_url=fields.get("webhook_url", ""),
                webhook_secret=fields.get("webhook_secret", ""),
                webhook_status=dumps(fields["webhook_status"]) if fields.get("webhook_status") else None,
                state=fields["state"],
                token_sha256=fields["token_sha256"],
                create_time=utcnow(),
            )
            session.add(row)
            return row

    def get_subscription(
        self, tenant: str, *, subscription_id: str = "", token_sha256: str = ""
    ) -> schema.Subscription:
        """By id (within the tenant) or by token hash (any tenant: the token is the credential)."""
        with self._tx() as session:
            if subscription_id:
                row = session.get(schema.Subscription, subscription_id)
                if row is None or (tenant != ALL_TENANTS and row.tenant != tenant):
                    raise errors.NotFound(f"subscriptions/{subscription_id} does not exist")
                return row
            row = session.scalar(select(schema.Subscription).where(schema.Subscription.token_sha256 == token_sha256))
            if row is None:
                raise errors.NotFound("no subscription has this token")
            return row

    def list_subscriptions(self, tenant: str, page_size: int, page_token: str, active_webhooks_only: bool) -> PageOf:
        """ALL_TENANTS allowed (the notifier's webhook dispatcher)."""
        stmt = select(schema.Subscription)
        if tenant != ALL_TENANTS:
            stmt = stmt.where(schema.Subscription.tenant == tenant)
        if active_webhooks_only:
            stmt = stmt.where(schema.Subscription.webhook_url != "", schema.Subscription.state == 1)
        order = (schema.Subscription.create_time.desc(), schema.Subscription.id.desc())
        return self._page(stmt, order, page_size, page_token, f"subs|{tenant}|{active_webhooks_only}")

    def update_subscription(self, tenant: str, subscription_id: str, values: dict[str, Any]) -> schema.Subscription:
        """Set state, webhook_status (a dict) and/or webhook_secret."""
        with self._tx() as session:
            row = session.get(schema.Subscription, subscription_id)
            if row is None or (tenant != ALL_TENANTS and row.tenant != tenant):
                raise errors.NotFound(f"subscriptions/{subscription_id} does not exist")
            if "state" in values:
                row.state = values["state"]
            if "webhook_status" in values:
                row.webhook_status = dumps(values["webhook_status"])
            if "webhook_secret" in values:
                row.webhook_secret = values["webhook_secret"]
            return row

    # ----------------------------------------------------------------- API keys

    def create_api_key(self, tenant: str, display_name: str, prefix: str, key_sha256: str) -> schema.ApiKey:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", tenant):
            raise InvalidArgument.field("api_key.tenant", "1 to 64 letters, digits, '_', '.', '-'")
        if not re.fullmatch(r"[0-9a-f]{64}", key_sha256):
            raise InvalidArgument.field("key_sha256", "the lowercase hex SHA-256 of the key")
        with self._tx() as session:
            row = schema.ApiKey(
                id=names.new_id(), tenant=tenant, display_name=display_name, prefix=prefix[:16], key_sha256=key_sha256
            )
            session.add(row)
            return row

    def lookup_api_key(self, key_sha256: str) -> storage_service_pb2.ApiKey:
        """The key of this hash as a message, any tenant's (the hash is the credential)."""
        with self.engine.connect() as connection:
            row = connection.execute(LOOKUP_API_KEY, {"key_sha256": key_sha256}).first()
        if row is None:
            raise errors.NotFound("no API key has this hash")
        return convert.api_key(row)

    def list_api_keys(self, page_size: int, page_token: str) -> PageOf:
        stmt = select(schema.ApiKey)
        order = (schema.ApiKey.create_time.desc(), schema.ApiKey.id.desc())
        return self._page(stmt, order, page_size, page_token, "keys")

    def revoke_api_key(self, key_id: str) -> schema.ApiKey:
        with self._tx() as session:
            row = session.get(schema.ApiKey, key_id)
            if row is None:
                raise errors.NotFound(f"apiKeys/{key_id} does not exist")
            if row.revoke_time is None:
                row.revoke_time = utcnow()
            return row

    # ------------------------------------------------------------------ helpers

    def _page(
        self,
        stmt: Select[*tuple[Any, ...]],
        order: Sequence[Any],
        page_size: int,
        page_token: str,
        scope: str,
        rows: bool = False,
    ) -> PageOf:
        """One page of `stmt` in `order`, with the total count. `rows`: keep result
        rows (several entities) instead of the first entity."""
        page = query.page(page_size, page_token, scope)
        with self._tx() as session:
            total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
            ordered = paged(stmt, order, page)
            items = list(session.execute(ordered).all()) if rows else list(session.scalars(ordered).all())
        return PageOf(
            [tuple(i) for i in items] if rows else items, query.next_token(page, len(items), total, scope), total
        )


def _append_notes(row: schema.Run, notes: Sequence[str]) -> None:
    """Append `notes` (checked by validation.check_notes) to the run's notes.
    A run keeps at most MAX_NOTES: past that, the last one says that more were
    not kept, rather than refusing a runner's state change or heartbeat (it
    cannot know how many notes the run already has)."""
    if not notes:
        return
    current = json.loads(row.notes) if row.notes else []
    if current and current[-1] == validation.NOTES_DROPPED:
        return
    combined = current + list(notes)
    if len(combined) > validation.MAX_NOTES:
        combined = [*combined[: validation.MAX_NOTES - 1], validation.NOTES_DROPPED]
    row.notes = dumps(combined)


# ------------------------------------------------------------------- queries


def _dml(result: Result[Any]) -> CursorResult[Any]:
    """What Session.execute answers an UPDATE or DELETE: a CursorResult, with
    its rowcount (the session's signature says only Result)."""
    return cast("CursorResult[Any]", result)


def paged(stmt: Select[*tuple[Any, ...]], order: Sequence[Any], page: query.Page) -> Select[*tuple[Any, ...]]:
    """One page of `stmt`: OFFSET ... FETCH on SQL Server, LIMIT ... OFFSET elsewhere.
    Lists run newest first with a descending tie-break (create_time DESC, id DESC):
    one backward scan of the (tenant, create_time) index, whose rows SQL Server
    keeps in clustered-key (id) order within a time, yields the page without a sort."""
    return stmt.order_by(*order).offset(page.offset).limit(page.size)


RUNS = schema.Run.__table__
EXPERIMENTS = schema.Experiment.__table__
RESULTS = schema.ModelResult.__table__
METRICS = schema.ModelResultMetric.__table__
API_KEYS = schema.ApiKey.__table__


def columns_of(entity: type[schema.Base], leave_out: Sequence[str] = ()) -> list[ColumnElement[Any]]:
    """The table columns of an ORM entity, each labelled with its attribute's
    name (Run.state is the column run_state): a Core row then reads like the
    entity, and automl.storage.convert takes either."""
    table = entity.__table__
    return [
        table.c[prop.columns[0].name].label(prop.key)
        for prop in inspect(entity).column_attrs
        if prop.key not in leave_out
    ]


RUN_COLUMNS = [*columns_of(schema.Run), EXPERIMENTS.c.id.label("experiment_id")]
GET_RUN = (
    select(*RUN_COLUMNS)
    .select_from(RUNS.outerjoin(EXPERIMENTS, EXPERIMENTS.c.pk == RUNS.c.experiment_pk))
    .where(RUNS.c.id == bindparam("run_id"))
)
RUN_HEAD = select(RUNS.c.tenant, RUNS.c.primary_metric).where(RUNS.c.id == bindparam("run_id"))
LOOKUP_API_KEY = select(*columns_of(schema.ApiKey)).where(API_KEYS.c.key_sha256 == bindparam("key_sha256"))
# The best result of the run (joined on best_result_id) and the run's results up to
# it, interrupted ones left out: ListRunRecords' models_since_best, one column.
BEST = RESULTS.alias("best_result")
UP_TO_BEST = (
    select(func.count())
    .select_from(RESULTS)
    .where(
        RESULTS.c.run_id == RUNS.c.id,
        RESULTS.c.create_time <= BEST.c.create_time,
        RESULTS.c.outcome != run_pb2.ModelResult.OUTCOME_INTERRUPTED,
    )
    .correlate(RUNS, BEST)
    .scalar_subquery()
    .label("up_to_best")
)
RESULT_BASIC_COLUMNS = columns_of(schema.ModelResult, leave_out=("model_json", "folds"))
METRIC_COLUMNS = columns_of(schema.ModelResultMetric)


def _since_best(row: Row[Any]) -> int:
    """Candidates evaluated or failed after the best one; interrupted ones (a
    normal stop of the run) are no lack of progress and count nowhere."""
    done: int = row.models_evaluated + row.models_failed
    if row.best_result_id is None:
        return done
    return max(0, done - (row.up_to_best or 0))


def _queue_positions(connection: Connection | Session, rows: Iterable[Any]) -> dict[str, int]:
    """The queue position of each QUEUED run among `rows`, by id (reads the
    whole queue, so only when one of them is QUEUED)."""
    if not any(row.state == c.RUN_STATE_QUEUED for row in rows):
        return {}
    run = RUNS.c
    queued = [
        runqueue.Queued(run_id, tenant, queue_time or create_time, bool(takeovers))
        for run_id, tenant, queue_time, create_time, takeovers in connection.execute(
            select(run.id, run.tenant, run.queue_time, run.create_time, run.takeovers).where(
                run.run_state == c.RUN_STATE_QUEUED
            )
        )
    ]
    holding: dict[str, int] = dict(
        connection.execute(
            select(run.tenant, func.count()).where(run.run_state.in_(HOLDING_STATES)).group_by(run.tenant)
        ).all()
    )
    served: dict[str, dt.datetime] = dict(
        connection.execute(
            select(run.tenant, func.max(run.claim_time))
            .where(run.tenant.in_({q.tenant for q in queued}))
            .group_by(run.tenant)
        ).all()
    )
    return runqueue.positions(queued, holding, served)


def _metric_rows(connection: Connection, result_ids: list[str]) -> dict[str, list[Row[Any]]]:
    """The metric rows of these results, by result id, in metric order."""
    by_result: dict[str, list[Row[Any]]] = {rid: [] for rid in result_ids}
    for chunk_start in range(0, len(result_ids), 500):  # bounded IN lists
        chunk = result_ids[chunk_start : chunk_start + 500]
        stmt = select(*METRIC_COLUMNS).where(METRICS.c.result_id.in_(chunk)).order_by(METRICS.c.metric)
        for metric_row in connection.execute(stmt):
            by_result[metric_row.result_id].append(metric_row)
    return by_result


# The leaderboard's statements, built once (SQLAlchemy then compiles each once):
# a run's succeeded results on a metric are the prefix (run_id, metric) of the
# index on model_result_metrics (run_id, metric, mean), which serves the count,
# the means in rank order and the ranking join.
RANKED = and_(METRICS.c.run_id == bindparam("run_id"), METRICS.c.metric == bindparam("metric"))
RANKED_COUNT = select(func.count()).select_from(METRICS).where(RANKED)
BETTER_COUNT = {
    True: RANKED_COUNT.where(METRICS.c.mean > bindparam("mean")),
    False: RANKED_COUNT.where(METRICS.c.mean < bindparam("mean")),
}
LEADERBOARD_MEANS = {  # by higher_is_better: the means best first, from the index alone
    higher: select(METRICS.c.mean)
    .where(RANKED)
    .order_by(METRICS.c.mean.desc() if higher else METRICS.c.mean.asc())
    .offset(bindparam("last_offset"))
    .limit(1)
    for higher in (True, False)
}


def _ranked_results(higher: bool, bounded: bool) -> Select[*tuple[Any, ...]]:
    """A run's succeeded results (their columns but model_json and folds) with their
    mean on the metric (ranked_mean), best first; `bounded`: down to the mean
    :last only."""
    mean = METRICS.c.mean
    stmt = (
        select(*RESULT_BASIC_COLUMNS, mean.label("ranked_mean"))
        .select_from(RESULTS.join(METRICS, METRICS.c.result_id == RESULTS.c.id))
        .where(RANKED)
    )
    if bounded:
        stmt = stmt.where(mean >= bindparam("last") if higher else mean <= bindparam("last"))
    order = (mean.desc() if higher else mean.asc(), RESULTS.c.eval_order)
    return stmt.order_by(*order).offset(bindparam("page_offset")).limit(bindparam("page_size"))


LEADERBOARD_PAGE = {
    (higher, bounded): _ranked_results(higher, bounded) for higher in (True, False) for bounded in (True, False)
}


def _leaderboard_entries(connection: Connection, ranked: dict[str, Any], page: query.Page) -> list[Any]:
    """One leaderboard page read from the database (see MetadataStore.leaderboard)."""
    higher = metrics.higher_is_better(ranked["metric"])
    # The page ends at or before the mean of its last entry, read from the index
    # alone: bounded by it, the join reads the page's results (and ties), not all
    # of them, whatever the planner estimates. (Right after a bulk insert
    # PostgreSQL has no statistics, expects one row and joins all 10,000 before
    # sorting: 50 ms against 1 ms.)
    last = connection.scalar(LEADERBOARD_MEANS[higher], {**ranked, "last_offset": page.offset + page.size - 1})
    params = {**ranked, "page_offset": page.offset, "page_size": page.size, "last": last}
    items = connection.execute(LEADERBOARD_PAGE[higher, last is not None], params).all()
    found = _metric_rows(connection, [row.id for row in items])
    entries = []
    previous: tuple[int, float] | None = None
    for i, row in enumerate(items):
        value = row.ranked_mean
        if previous is not None and value == previous[1]:
            rank = previous[0]  # a tie shares the better rank
        elif previous is not None:
            rank = page.offset + i + 1  # ordered by value: everything before is strictly better
        else:  # the page's first entry may tie with the previous page: count what is better
            rank = 1 + (connection.scalar(BETTER_COUNT[higher], {**ranked, "mean": value}) or 0)
        entries.append(
            run_pb2.LeaderboardEntry(rank=rank, model_result=convert.model_result(row, found[row.id], False))
        )
        previous = (rank, value)
    return entries


class LeaderboardPages:
    """A bounded, thread-safe LRU of leaderboard pages (the servicer copies the
    entries into its answer, so a kept page is never changed)."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._pages: OrderedDict[tuple[Any, ...], list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> list[Any] | None:
        with self._lock:
            entries = self._pages.get(key)
            if entries is not None:
                self._pages.move_to_end(key)
            return entries

    def put(self, key: tuple[Any, ...], entries: list[Any]) -> None:
        with self._lock:
            self._pages[key] = entries
            self._pages.move_to_end(key)
            while len(self._pages) > self.capacity:
                self._pages.popitem(last=False)
