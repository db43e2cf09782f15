"""Datasets through the storage service on every backend: the 256 KiB rule,
streaming both ways, dedup, preview, and bad input that leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest

from automl.common import status
from automl.v1 import common_pb2, dataset_pb2
from services.storage import schema
from tests.storage.helpers import mixed_csv, upload_stream

D = dataset_pb2


async def upload(storage, data: bytes, **kwargs):
    return await storage.stub.UploadDataset(upload_stream(data, **kwargs))


async def download(storage, name: str) -> bytes:
    return b"".join([m.chunk async for m in storage.stub.DownloadDataset(D.DownloadDatasetRequest(name=name))])


async def test_small_csv_is_inline_and_profiled(storage):
    data = mixed_csv(200)
    dataset = await upload(storage, data, name="small")
    assert dataset.storage_location == D.Dataset.STORAGE_LOCATION_INLINE
    assert dataset.size_bytes == len(data)
    assert dataset.sha256 == hashlib.sha256(data).hexdigest()
    assert dataset.row_count == 200
    columns = {c.name: c for c in dataset.columns}
    assert list(columns) == ["id", "age", "fare", "city", "comment", "label"]
    assert columns["age"].missing_count == len(range(0, 200, 17))
    assert columns["age"].inferred_type == common_pb2.COLUMN_TYPE_NUMERIC
    assert columns["city"].inferred_type == common_pb2.COLUMN_TYPE_CATEGORICAL
    assert columns["city"].distinct_count == 4
    assert storage.blob_keys() == []
    assert await download(storage, dataset.name) == data
    got = await storage.stub.GetDataset(D.GetDatasetRequest(name=dataset.name))
    assert got == dataset


async def test_large_csv_goes_to_the_blob_store_once(storage):
    data = mixed_csv(8000)
    assert len(data) > 256 * 1024
    first = await upload(storage, data, name="big", chunk=100_000)
    assert first.storage_location == D.Dataset.STORAGE_LOCATION_BLOB
    assert await download(storage, first.name) == data
    assert len(storage.blob_keys()) == 1
    second = await upload(storage, data, name="same bytes", chunk=333_333)
    assert second.name != first.name and second.sha256 == first.sha256
    assert len(storage.blob_keys()) == 1, "identical content must be stored once"
    assert storage.count(schema.Content) == 1
    await storage.stub.DeleteDataset(D.DeleteDatasetRequest(name=first.name))
    assert len(storage.blob_keys()) == 1, "still used by the second dataset"
    assert await download(storage, second.name) == data
    await storage.stub.DeleteDataset(D.DeleteDatasetRequest(name=second.name))
    assert storage.blob_keys() == []
    assert storage.count(schema.Content) == 0


async def test_exactly_the_inline_limit_stays_inline(storage):
    exact = b"a,b\n" + b"1,2\n" * 65535
    assert len(exact) == 256 * 1024
    dataset = await upload(storage, exact)
    assert dataset.storage_location == D.Dataset.STORAGE_LOCATION_INLINE
    over = await upload(storage, exact + b"7,7\n")
    assert over.storage_location == D.Dataset.STORAGE_LOCATION_BLOB
    assert storage.count(schema.Content) == 2


async def test_preview_returns_typed_first_rows(storage):
    dataset = await upload(storage, mixed_csv(50))
    preview = await storage.stub.PreviewDataset(D.PreviewDatasetRequest(name=dataset.name, row_count=3))
    assert preview.total_rows == 50
    assert len(preview.rows) == 3
    first = list(preview.rows[0].values)
    assert first[0].number_value == 0
    assert first[1].WhichOneof("kind") == "null_value"  # row 0: age missing
    assert first[3].string_value in ("Paris", "Lyon", "Nice", "Lille")


async def test_list_paging_and_filter(storage):
    for i in range(5):
        await upload(storage, mixed_csv(10, seed=i), name=f"set {i}")
    page1 = await storage.stub.ListDatasets(D.ListDatasetsRequest(page_size=2))
    assert page1.total_size == 5 and len(page1.datasets) == 2 and page1.next_page_token
    page2 = await storage.stub.ListDatasets(D.ListDatasetsRequest(page_size=2, page_token=page1.next_page_token))
    page3 = await storage.stub.ListDatasets(D.ListDatasetsRequest(page_size=2, page_token=page2.next_page_token))
    names = [d.name for p in (page1, page2, page3) for d in p.datasets]
    assert len(set(names)) == 5 and not page3.next_page_token
    filtered = await storage.stub.ListDatasets(D.ListDatasetsRequest(filter='display_name:"set 3"'))
    assert [d.display_name for d in filtered.datasets] == ["set 3"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.ListDatasets(D.ListDatasetsRequest(page_token="garbage!"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert status.field_violations(caught.value)[0].field == "page_token"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.ListDatasets(
            D.ListDatasetsRequest(page_token=page1.next_page_token, filter="display_name:x")
        )
    assert "another query" in caught.value.details()


async def test_tenants_never_see_each_other(storage):
    mine = await storage.stub.UploadDataset(upload_stream(mixed_csv(5)), metadata=storage.tenant("alice"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.GetDataset(D.GetDatasetRequest(name=mine.name), metadata=storage.tenant("bob"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    listed = await storage.stub.ListDatasets(D.ListDatasetsRequest(), metadata=storage.tenant("bob"))
    assert listed.total_size == 0


BAD_UPLOADS = {
    "empty": (b"", "empty"),
    "header only": (b"a,b,c\n", "no data rows"),
    "no header": (b"1,2,3\n4,5,6\n", "has_header"),
    "ragged": (b"a,b,c\n1,2,3\n4,5\n", "row 3 has 2 fields, expected 3"),
    "too many fields": (b"a,b\n1,2\n3,4\n5,6,7\n", "row 4 has 3 fields, expected 2"),
    # The first data row too (fuzzing: INTERNAL, a ValueError of a zip; fewer fields blamed the next row):
    "first row too long": (b"a,b\n1,2,3\n", "row 2 has 3 fields, expected 2 (as in the header)"),
    "first row too long, all rows": (b"a,b\n1,2,3\n4,5,6\n", "row 2 has 3 fields, expected 2"),
    "first row too short": (b"a,b\n1\n2,3\n", "row 2 has 1 field, expected 2 (as in the header)"),
    "unclosed quote": (b'a,b\n"open,2\n3,4\n', "row 2 opens a quoted field that never closes"),
    "not utf-8": (b"a,b\n1,caf\xe9\n", "line 2"),
    "nul byte": (b"a,b\n1,2\n3,\x004\n", "line 3"),
    "duplicate column": (b"a,b,a\n1,2,3\n", "'a'"),
    "empty column name": (b"a,,c\n1,2,3\n", "empty"),
}  # files past a size limit (a line of 9 MiB, ...): test_limits.py


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
async def test_bad_upload_is_refused_and_leaves_nothing(storage, case):
    data, expected = BAD_UPLOADS[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(storage, data, chunk=1024 * 1024)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert expected in caught.value.details()
    assert storage.count(schema.Dataset) == 0
    assert storage.count(schema.Content) == 0
    assert storage.blob_keys() == []


async def test_first_message_must_be_the_header(storage):
    async def chunks_only():
        yield D.UploadDatasetRequest(chunk=b"a,b\n1,2\n")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.UploadDataset(chunks_only())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert status.field_violations(caught.value)[0].field == "header"


async def test_wrong_checksum_is_the_callers_invalid_argument_and_leaves_nothing(storage):
    """The caller's checksum against the bytes it sent is its input: INVALID_ARGUMENT
    naming the field (HTTP 400), not DATA_LOSS (HTTP 500, storage's corruption)."""
    data = mixed_csv(8000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(storage, data, expected_sha256="0" * 64)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert hashlib.sha256(data).hexdigest() in caught.value.details()
    assert [v.field for v in status.field_violations(caught.value)] == ["header.expected_sha256"]
    assert storage.count(schema.Dataset) == 0 and storage.blob_keys() == []


async def test_upload_cut_off_by_the_client_leaves_nothing(storage):
    data = mixed_csv(20000)
    sent = asyncio.Event()

    async def stalls():
        async for message in upload_stream(data, chunk=256 * 1024):
            yield message
            if message.WhichOneof("content") == "chunk" and not sent.is_set():
                sent.set()
        await asyncio.sleep(3600)  # never finishes: the client cancels

    call = storage.stub.UploadDataset(stalls())
    await sent.wait()
    await asyncio.sleep(0.5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(50):  # the server notices asynchronously
        if not storage.blob_keys():
            break
        await asyncio.sleep(0.1)
    assert storage.blob_keys() == []
    assert storage.count(schema.Dataset) == 0


async def test_unknown_and_malformed_names(storage):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.GetDataset(D.GetDatasetRequest(name="datasets/ffffffffffffffff"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.GetDataset(D.GetDatasetRequest(name="experiments/x"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert status.field_violations(caught.value)[0].field == "name"


@pytest.mark.parametrize("text", ['display_name:"\x00"', 'display_name:"\\q"', 'display_name:"a'])
async def test_a_filter_text_that_is_no_json_string_is_invalid_not_internal(storage, text):
    """Found by the fuzzer: json.loads' error used to escape as INTERNAL."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await storage.stub.ListDatasets(dataset_pb2.ListDatasetsRequest(filter=text))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
