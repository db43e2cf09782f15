"""The test servers are real: PostgreSQL answers SQL, the S3 server keeps
objects, streams multipart uploads and refuses wrong keys with an S3 error."""

from __future__ import annotations

import io
import os

import pytest
from minio.error import S3Error
from sqlalchemy import create_engine, text


def test_postgres_is_a_real_server(postgres_url, postgres_server):
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        assert "PostgreSQL" in connection.scalar(text("SELECT version()"))
        connection.execute(text("CREATE TABLE t (x int)"))
        connection.execute(text("INSERT INTO t VALUES (1), (2)"))
        assert connection.scalar(text("SELECT sum(x) FROM t")) == 3
    engine.dispose()
    other = postgres_server.create_database()
    assert other not in postgres_url
    postgres_server.drop_database(other)


def test_s3_objects_multipart_and_copy(s3_server, s3_bucket):
    client = s3_server.client()
    client.put_object(s3_bucket, "small", io.BytesIO(b"hello"), 5)
    assert client.get_object(s3_bucket, "small").read() == b"hello"
    big = os.urandom(12 * 1024 * 1024)
    client.put_object(s3_bucket, "big", io.BytesIO(big), length=-1, part_size=5 * 1024 * 1024)
    assert client.get_object(s3_bucket, "big").read() == big
    assert client.stat_object(s3_bucket, "big").size == len(big)
    assert sorted(o.object_name for o in client.list_objects(s3_bucket)) == ["big", "small"]
    client.remove_object(s3_bucket, "small")
    assert [o.object_name for o in client.list_objects(s3_bucket)] == ["big"]


def test_s3_wrong_keys_fail_with_an_s3_error(s3_server, s3_bucket):
    with pytest.raises(S3Error) as caught:
        s3_server.client(secret_key="wrong").bucket_exists(s3_bucket)
    assert caught.value.code in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")
