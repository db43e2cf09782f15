"""Small builders for storage tests: CSV bytes made at run time, upload streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from automl.v1 import common_pb2, dataset_pb2


def mixed_csv(rows: int, seed: int = 0) -> bytes:
    """A mixed-type table: numbers, a category, free text, missing values, a label."""
    rng = np.random.default_rng(seed)
    lines = ["id,age,fare,city,comment,label"]
    cities = ["Paris", "Lyon", "Nice", "Lille"]
    for i in range(rows):
        age = "" if i % 17 == 0 else f"{rng.integers(1, 90)}"
        fare = f"{rng.normal(30, 10):.3f}"
        city = cities[int(rng.integers(0, 4))]
        comment = f'"note {i}, about {city.lower()} trip"'
        label = "yes" if rng.random() < 0.4 else "no"
        lines.append(f"{i},{age},{fare},{city},{comment},{label}")
    return ("\n".join(lines) + "\n").encode()


async def upload_stream(
    data: bytes,
    name: str = "data",
    chunk: int = 64 * 1024,
    options: common_pb2.CsvOptions | None = None,
    expected_sha256: str = "",
) -> AsyncIterator[dataset_pb2.UploadDatasetRequest]:
    header = dataset_pb2.UploadDatasetHeader(
        display_name=name, csv_options=options or common_pb2.CsvOptions(), expected_sha256=expected_sha256
    )
    yield dataset_pb2.UploadDatasetRequest(header=header)
    for start in range(0, len(data), chunk):
        yield dataset_pb2.UploadDatasetRequest(chunk=data[start : start + chunk])
