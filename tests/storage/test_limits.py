"""Bounded input on every backend (issue 21, item 3): CSV files past the column,
line and field limits, uploads past AUTOML_UPLOAD_MAX_BYTES, and the per-tenant
quotas (datasets, stored bytes, active runs) are refused RESOURCE_EXHAUSTED with
a message naming the limit and its setting, and leave nothing behind: no
dataset row, no content row, no blob."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest

from automl.v1 import common_pb2 as c
from automl.v1 import dataset_pb2, experiment_pb2, run_pb2
from automl.v1 import storage_service_pb2 as pb
from services.storage import schema
from tests.storage.helpers import mixed_csv, upload_stream

MiB = 1 << 20
# Small limits, so that the tests pass them with small files. The CSV limits but the columns keep their defaults.
LIMITS = {
    "upload_max_bytes": 2 * MiB,
    "tenant_max_datasets": 3,
    "tenant_max_stored_bytes": 4 * MiB,
    "tenant_max_active_runs": 2,
    "csv_max_columns": 1000,  # the files here are 1,000 wide; the default (250) is checked in test_process.py
}
BOUND = c.StopConditions(max_models=5)


@pytest.fixture
def storage_settings(storage_settings):
    """The conftest's settings on every backend, with LIMITS."""
    settings, minio, bucket = storage_settings
    return dataclasses.replace(settings, **LIMITS), minio, bucket


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    return caught.value


def assert_nothing_stored(storage, datasets: int = 0, blobs: int = 0) -> None:
    assert storage.count(schema.Dataset) == datasets
    assert storage.count(schema.Content) == datasets  # each test's datasets hold distinct bytes
    assert len(storage.blob_keys()) == blobs


def wide_csv(columns: int, rows: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    row = ",".join(str(i % 10) for i in range(columns))
    return (header + "\n" + "\n".join([row] * rows) + "\n").encode()


# ------------------------------------------------------------------ CSV limits


async def test_too_many_columns_are_refused_on_the_header(storage):
    data = wide_csv(1001, 200)  # 400 KB: past the inline limit, so a blob was begun
    assert len(data) > storage.settings.inline_max_bytes
    error = await refused(storage.stub.UploadDataset(upload_stream(data)))
    assert "more than 1,000 columns" in error.details() and "AUTOML_CSV_MAX_COLUMNS" in error.details()
    assert_nothing_stored(storage)


async def test_the_column_limit_itself_is_accepted(storage):
    dataset = await storage.stub.UploadDataset(upload_stream(wide_csv(1000, 20)))
    assert len(dataset.columns) == 1000 and dataset.row_count == 20


async def test_too_many_columns_without_a_header(storage):
    data = wide_csv(1001, 5).split(b"\n", 1)[1]
    error = await refused(storage.stub.UploadDataset(upload_stream(data, options=c.CsvOptions(has_header=False))))
    assert "first row" in error.details() and "AUTOML_CSV_MAX_COLUMNS" in error.details()
    assert_nothing_stored(storage)


async def test_a_line_past_the_limit_is_refused(storage):
    data = b"a,b\n1,2\n" + b"x" * (300 * 1024) + b"\n"  # one line of 300 KiB, over 256 KiB
    error = await refused(storage.stub.UploadDataset(upload_stream(data, chunk=MiB)))
    assert "line 3 is longer than 262,144 bytes" in error.details()
    assert "AUTOML_CSV_MAX_LINE_BYTES" in error.details()
    assert_nothing_stored(storage)


async def test_a_line_at_the_limit_is_accepted_wherever_it_falls(storage):
    line = b"x" * (128 * 1024) + b"," + b"y" * (128 * 1024 - 1)  # 262,144 bytes, two fields at most 128 KiB
    data = b"a,b\n" + b"\n".join([b"1,2"] * 1000 + [line] * 3) + b"\n"
    dataset = await storage.stub.UploadDataset(upload_stream(data))
    assert dataset.row_count == 1003


async def test_a_row_longer_than_the_reader_holds_is_refused(storage):
    """Line breaks inside quoted fields: each line is short, the row is not."""
    field = b'"' + b"z\n" * 550 + b'"'  # 1,102 bytes, 551 lines
    long_row = b",".join([field] * 1000)  # 1.1 MB: past the reader's two blocks wherever it starts
    header = ",".join(f"c{i}" for i in range(1000)).encode()
    data = header + b"\n" + b",".join([b"1"] * 1000) + b"\n" + long_row + b"\n"
    error = await refused(storage.stub.UploadDataset(upload_stream(data)))
    assert "a row is longer than" in error.details() and "AUTOML_CSV_MAX_LINE_BYTES" in error.details()
    assert_nothing_stored(storage)


async def test_a_field_past_the_limit_is_refused_with_its_row_and_column(storage):
    data = b"a,b\n1,2\n3," + b"w" * (128 * 1024 + 1) + b"\n5,6\n"
    error = await refused(storage.stub.UploadDataset(upload_stream(data)))
    assert "row 3, column 'b': a field of 131,073 bytes" in error.details()
    assert "AUTOML_CSV_MAX_FIELD_BYTES" in error.details()
    assert_nothing_stored(storage)


async def test_a_column_name_past_the_field_limit_is_refused(storage):
    data = b"a," + b"n" * (128 * 1024 + 1) + b"\n1,2\n"
    error = await refused(storage.stub.UploadDataset(upload_stream(data)))
    assert "column 2's name" in error.details() and "AUTOML_CSV_MAX_FIELD_BYTES" in error.details()
    assert_nothing_stored(storage)


# ----------------------------------------------------------------- upload size


async def test_an_upload_past_the_byte_limit_is_refused(storage):
    data = mixed_csv(42_000)  # 2.27 MB, over AUTOML_UPLOAD_MAX_BYTES (2 MiB)
    error = await refused(storage.stub.UploadDataset(upload_stream(data, chunk=64 * 1024)))
    assert f"larger than {2 * MiB:,} bytes" in error.details() and "AUTOML_UPLOAD_MAX_BYTES" in error.details()
    assert_nothing_stored(storage)


# ------------------------------------------------------------------ quotas


async def test_the_dataset_after_the_quota_is_refused(storage):
    for i in range(3):
        await storage.stub.UploadDataset(upload_stream(mixed_csv(10 + i), name=f"d{i}"))
    error = await refused(storage.stub.UploadDataset(upload_stream(mixed_csv(20))))
    assert "keeps 3 datasets" in error.details() and "AUTOML_TENANT_MAX_DATASETS (3)" in error.details()
    assert_nothing_stored(storage, datasets=3)
    # Another tenant has a quota of its own; a delete makes room.
    await storage.stub.UploadDataset(upload_stream(mixed_csv(20)), metadata=storage.tenant("other"))
    listed = await storage.stub.ListDatasets(dataset_pb2.ListDatasetsRequest())
    await storage.stub.DeleteDataset(dataset_pb2.DeleteDatasetRequest(name=listed.datasets[0].name))
    await storage.stub.UploadDataset(upload_stream(mixed_csv(21)))


async def test_stored_bytes_over_the_quota_are_refused_and_leave_nothing(storage):
    first = mixed_csv(28_000)  # 1.5 MB each: two fit in 4 MiB, three do not
    await storage.stub.UploadDataset(upload_stream(first))
    await storage.stub.UploadDataset(upload_stream(mixed_csv(28_000, seed=1)))
    error = await refused(storage.stub.UploadDataset(upload_stream(mixed_csv(28_000, seed=2))))
    assert "AUTOML_TENANT_MAX_STORED_BYTES" in error.details()
    assert_nothing_stored(storage, datasets=2, blobs=2)
    # The same bytes again count again: each dataset counts its size.
    await refused(storage.stub.UploadDataset(upload_stream(first)))
    assert_nothing_stored(storage, datasets=2, blobs=2)


async def test_concurrent_uploads_cannot_both_pass_under_the_stored_bytes_quota(storage):
    """Both pass the check made before the bytes are read (nothing stored yet for
    the second); the check under the tenant's lock lets one through."""
    await storage.stub.UploadDataset(upload_stream(mixed_csv(28_000)))
    calls = [storage.stub.UploadDataset(upload_stream(mixed_csv(28_000, seed=s))) for s in (1, 2)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(errors) == 1, outcomes
    assert errors[0].code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "AUTOML_TENANT_MAX_STORED_BYTES" in errors[0].details()
    assert_nothing_stored(storage, datasets=2, blobs=2)


async def experiment(storage, tenant: str = "default") -> experiment_pb2.Experiment:
    metadata = storage.tenant(tenant)
    data = await storage.stub.UploadDataset(upload_stream(mixed_csv(200)), metadata=metadata)
    spec = experiment_pb2.Experiment(dataset=data.name, target_column="label")
    return await storage.stub.CreateExperiment(
        experiment_pb2.CreateExperimentRequest(experiment=spec), metadata=metadata
    )


def new_run(storage, exp, tenant: str = "default"):
    request = pb.CreateRunRequest(run=run_pb2.Run(experiment=exp.name, stop_conditions=BOUND))
    return storage.stub.CreateRun(request, metadata=storage.tenant(tenant))


async def test_active_runs_past_the_quota_are_refused_until_one_ends(storage):
    exp = await experiment(storage)
    first = await new_run(storage, exp)
    await new_run(storage, exp)
    error = await refused(new_run(storage, exp))
    assert "2 active runs" in error.details() and "AUTOML_TENANT_MAX_ACTIVE_RUNS (2)" in error.details()
    assert storage.count(schema.Run) == 2
    await new_run(storage, await experiment(storage, "other"), "other")  # a quota per tenant
    await storage.stub.UpdateRunState(
        pb.UpdateRunStateRequest(name=first.name, expected_states=[c.RUN_STATE_PENDING], state=c.RUN_STATE_CANCELLED)
    )
    await new_run(storage, exp)


async def test_concurrent_runs_cannot_slip_under_the_quota(storage):
    exp = await experiment(storage)
    outcomes = await asyncio.gather(*(new_run(storage, exp) for _ in range(6)), return_exceptions=True)
    created = [o for o in outcomes if isinstance(o, run_pb2.Run)]
    refusals = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(created) == 2, outcomes
    assert len(refusals) == 4 and all(r.code() is grpc.StatusCode.RESOURCE_EXHAUSTED for r in refusals)
    assert storage.count(schema.Run) == 2
