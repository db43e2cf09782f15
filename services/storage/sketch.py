"""Distinct counts of a stream of values in bounded memory, in numpy.

Values arrive as 64-bit hashes (`mix` of their bits). `Distinct` keeps the K
smallest distinct hashes seen: while no more than K distinct values came, that
is all of them and the count is exact; past K, the K-th smallest hash gives
the estimate (K minimum values: (K - 1) / (K-th smallest / 2**64), about 1 %
standard error for K = 10,000). Most hashes of a batch need one comparison
against a direct-mapped table of hashes already seen and, once K is reached,
one against the K-th smallest: the sorting is left to the few that remain.

Imported on the first CSV, with numpy (the storage process starts without it).
"""

from __future__ import annotations

import numpy as np

SLOT_BITS = 14  # a 16,384-slot table per column: 128 KiB, cache-resident
_SHIFT = np.uint64(64 - SLOT_BITS)
_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xBF58476D1CE4E5B9)


def mix(bits: np.ndarray) -> np.ndarray:
    """A bijection of 64-bit keys (odd multiply, xorshift, odd multiply) that
    spreads any input over all 64 bits; `bits` (uint64) is overwritten."""
    bits *= _C1
    bits ^= bits >> np.uint64(32)
    bits *= _C2
    return bits


def number_hashes(numbers: np.ndarray) -> np.ndarray:
    """Hashes of float64 values, by value: 1, 1.0 and -0.0 + 0 hash alike."""
    normal = np.add(numbers, 0.0, dtype=np.float64)  # a copy; -0.0 becomes 0.0
    return mix(normal.view(np.uint64))


def text_hashes(values: list[str]) -> np.ndarray:
    """Hashes of distinct text values (Python's string hash: stable within the process)."""
    return mix(np.fromiter(map(hash, values), dtype=np.int64, count=len(values)).view(np.uint64))


class Distinct:
    """Distinct count of hashes: exact up to `k` values, then a K-minimum-values
    estimate. With `counting`, also the occurrences of each value while exact."""

    def __init__(self, k: int, counting: bool = False) -> None:
        self.k = k
        self.kept = np.empty(0, dtype=np.uint64)  # sorted, the k smallest distinct hashes
        self.exact = True
        # Direct-mapped table of seen hashes: slot = top SLOT_BITS bits. A slot
        # is free while its content does not map to it (so 0 is a valid hash).
        self.table = np.zeros(1 << SLOT_BITS, dtype=np.uint64)
        self.table[0] = np.uint64(1) << np.uint64(63)
        self.counting = counting
        self.slot_counts = np.zeros(1 << SLOT_BITS, dtype=np.int64) if counting else None
        self.extra: dict[int, int] = {}  # counts of hashes whose slot another one holds
        self.waiting: list[np.ndarray] = []  # once estimating: hashes not merged yet
        self.waiting_count = 0

    def add(self, hashes: np.ndarray) -> None:
        if not self.exact:
            # Only hashes below the k-th smallest change anything: a few per
            # batch, merged by the thousand (one sort, not one per batch).
            below = hashes[hashes < self.kept[-1]]
            self.waiting.append(below)
            self.waiting_count += len(below)
            if self.waiting_count >= 4096:
                self._flush()
            return
        slot = (hashes >> _SHIFT).astype(np.intp)
        seen = self.table[slot] == hashes
        if self.slot_counts is not None:
            self.slot_counts += np.bincount(slot[seen], minlength=len(self.table))
        if seen.all():
            return
        fresh = hashes[~seen]
        if self.exact and len(self.kept) >= self.k:
            # A hash above the k-th smallest was never seen: the (k+1)-th value.
            # (One equal to it was: its slot is held by another hash.)
            above = fresh > self.kept[-1]
            if above.any():
                self._overflow()
                fresh = fresh[~above]
        if len(fresh) == 0:
            return
        values, counts = np.unique(fresh, return_counts=True)
        self._claim(values, counts)
        self._keep(values)

    def _claim(self, values: np.ndarray, counts: np.ndarray) -> None:
        """Record new values in free slots of the table; count the rest aside."""
        slots = (values >> _SHIFT).astype(np.intp)
        free = (self.table[slots] >> _SHIFT).astype(np.intp) != slots
        self.table[slots[free]] = values[free]  # values sharing a free slot: one wins
        if self.slot_counts is None:
            return
        held = self.table[slots] == values
        np.add.at(self.slot_counts, slots[held], counts[held])
        for value, count in zip(values[~held].tolist(), counts[~held].tolist(), strict=True):
            self.extra[value] = self.extra.get(value, 0) + count

    def _keep(self, values: np.ndarray) -> None:
        """Merge sorted unique `values` into the k smallest."""
        at = np.searchsorted(self.kept, values)
        known = self.kept[np.minimum(at, max(len(self.kept) - 1, 0))] == values if len(self.kept) else None
        if known is not None and known.any():
            values, at = values[~known], at[~known]
        merged = np.insert(self.kept, at, values)
        if len(merged) > self.k:
            self._overflow()
            merged = merged[: self.k]
        self.kept = merged

    def _flush(self) -> None:
        if self.waiting:
            values = np.unique(np.concatenate(self.waiting))
            self.waiting, self.waiting_count = [], 0
            self._keep(values[values < self.kept[-1]])

    def _overflow(self) -> None:
        self.exact = False
        self.counting = False
        self.slot_counts = None
        self.extra = {}

    def count(self) -> int:
        self._flush()
        if self.exact:
            return len(self.kept)
        return round((self.k - 1) / (float(self.kept[-1]) / 2.0**64))

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, occurrences) of every value, while exact and counting."""
        assert self.slot_counts is not None
        owned = (self.table >> _SHIFT).astype(np.intp) == np.arange(len(self.table))
        hashes = np.concatenate([self.table[owned], np.fromiter(self.extra, dtype=np.uint64, count=len(self.extra))])
        counts = np.concatenate(
            [self.slot_counts[owned], np.fromiter(self.extra.values(), dtype=np.int64, count=len(self.extra))]
        )
        return hashes, counts


def unmix(hashes: np.ndarray) -> np.ndarray:
    """The keys `mix` turned into `hashes` (its inverse): the values behind counts."""
    out = hashes * _INV_C2
    out ^= out >> np.uint64(32)
    out *= _INV_C1
    return out


_INV_C1 = np.uint64(pow(int(_C1), -1, 1 << 64))
_INV_C2 = np.uint64(pow(int(_C2), -1, 1 << 64))
