"""The distinct-count sketch on its own: exact up to K values (with counts),
then a HyperLogLog estimate within a few percent across cardinalities."""

from __future__ import annotations

import numpy as np
import pytest

from services.storage import sketch


def count_of(values: np.ndarray, k: int = 10_000, batch: int = 10_000) -> sketch.Distinct:
    distinct = sketch.Distinct(k, counting=True)
    for start in range(0, len(values), batch):
        distinct.add(sketch.number_hashes(values[start : start + batch]))
    return distinct


def test_mix_is_a_bijection_that_unmix_undoes():
    keys = np.random.default_rng(0).integers(0, 2**64 - 1, 10_000, dtype=np.uint64, endpoint=True)
    assert (sketch.unmix(sketch.mix(keys.copy())) == keys).all()


def test_exact_with_counts_up_to_k():
    values = np.arange(50_000, dtype=np.float64) % 10_000  # each of 10,000 values 5 times
    distinct = count_of(values)
    assert (distinct.exact, distinct.count()) == (True, 10_000)
    hashes, counts = distinct.counts()
    assert sorted(sketch.unmix(hashes).view(np.float64).tolist()) == list(range(10_000))
    assert set(counts.tolist()) == {5}


@pytest.mark.parametrize("n", [10_001, 41_000, 200_000, 1_000_000])
@pytest.mark.parametrize("kind", ["whole numbers", "random floats", "repeated"])
def test_estimate_within_three_percent(n, kind):
    """Whole numbers have all-zero low bits (the mix must spread them); 41,000 is
    where the classic HyperLogLog estimate is biased; "repeated" sends each
    value 3 times, in batches, as a CSV column does."""
    rng = np.random.default_rng(n)
    values = {
        "whole numbers": np.arange(n, dtype=np.float64),
        "random floats": rng.random(n),
        "repeated": rng.permutation(np.repeat(np.arange(n, dtype=np.float64), 3)),
    }[kind]
    distinct = count_of(values)
    assert not distinct.exact
    assert abs(distinct.count() - n) / n < 0.03, distinct.count()


def test_counts_only_while_exact():
    distinct = count_of(np.arange(20_000, dtype=np.float64))
    assert not distinct.exact and distinct.slot_counts is None
    with pytest.raises(AssertionError):
        distinct.counts()


def string_hashes(strings: list[str]) -> np.ndarray:
    import pyarrow as pa

    from services.storage import csvprofile

    csvprofile._load()  # the module imports numpy and pyarrow on first use
    return csvprofile._string_hashes(pa.array(strings, pa.string()))


def test_string_hashes_depend_on_content_only():
    import pyarrow as pa

    from services.storage.csvprofile import _string_hashes

    strings = ["", "a", "ab", "ba", "a\x01", "Zürich", "é" * 300, "cust-000000001", "cust-000000010"]
    hashes = string_hashes(strings)
    assert len(set(hashes.tolist())) == len(strings)
    again = _string_hashes(pa.array(["pad", *reversed(strings)], pa.string()).slice(1))  # another array, offset
    assert again.tolist() == hashes.tolist()[::-1]
    ids = [f"id-{i}" for i in range(200_000)]
    assert len(np.unique(string_hashes(ids))) == len(ids)


def test_text_estimate_by_content():
    distinct = sketch.Distinct(10_000)
    for start in range(0, 300_000, 10_000):  # each id twice, in other batches
        distinct.add(string_hashes([f"user-{i % 150_000}" for i in range(start, start + 10_000)]))
    assert abs(distinct.count() - 150_000) / 150_000 < 0.03
