"""Distinct counts of a stream of values in bounded memory, in numpy.

Values arrive as 64-bit hashes (`mix` of their bits). `Distinct` keeps every
distinct hash while there are at most K of them (the count is exact); past K
it switches to a HyperLogLog of 2**14 one-byte registers (16 KiB, about 0.8 %
standard error), seeded with the K hashes, whose update is a few vector
operations per batch whatever the values repeat. Most hashes of a batch in the
exact phase need one comparison against a direct-mapped table of hashes
already seen: the sorting is left to the few that remain. The table and the
registers are smaller when the caller asks (`slot_bits`, `register_bits`): a
wide table's columns share a memory budget (csvprofile.Sizes).

Imported on the first CSV, with numpy (the storage process starts without it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Hashes = npt.NDArray[np.uint64]
"""64-bit hashes (and the keys `mix` makes them from)."""
Counts = npt.NDArray[np.int64]

SLOT_BITS = 14  # a 16,384-slot table per column: 128 KiB, cache-resident
REGISTER_BITS = 14  # HyperLogLog: 16,384 registers, standard error 1.04 / sqrt(16,384)
_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


def mix(bits: Hashes) -> Hashes:
    """A bijection of 64-bit keys (MurmurHash3's finaliser) that spreads any
    input over all 64 bits, low ones included (HyperLogLog reads those; floats
    of whole numbers have them all zero). `bits` (uint64) is overwritten."""
    bits ^= bits >> _S33
    bits *= _C1
    bits ^= bits >> _S33
    bits *= _C2
    bits ^= bits >> _S33
    return bits


def number_hashes(numbers: npt.NDArray[Any]) -> Hashes:
    """Hashes of float64 values, by value: 1, 1.0 and -0.0 + 0 hash alike."""
    normal = np.add(numbers, 0.0, dtype=np.float64)  # a copy; -0.0 becomes 0.0
    return mix(normal.view(np.uint64))


def string_hashes(offsets: npt.NDArray[np.integer[Any]], data: npt.NDArray[np.uint8]) -> Hashes:
    """Hashes of the strings of an Arrow string array, by content, without a
    Python object per string: `offsets` (n + 1 positions, as in the array's
    offsets buffer) into `data` (its bytes). A polynomial of each string's
    bytes, its length mixed in, then `mix`."""
    base = int(offsets[0])
    starts = (offsets[:-1] - base).astype(np.intp)
    lengths = np.diff(offsets).astype(np.intp)
    data = data[base : int(offsets[-1])]
    position = np.arange(len(data), dtype=np.intp) - np.repeat(starts, lengths)
    terms = data.astype(np.uint64) * _powers(int(lengths.max(initial=0)))[position]
    sums = np.zeros(len(starts), dtype=np.uint64)
    filled = lengths > 0  # reduceat would give an empty string its neighbour's byte
    if len(terms):
        sums[filled] = np.add.reduceat(terms, starts[filled])
    return mix(sums ^ (lengths.astype(np.uint64) * _C2))


_P = np.uint64(0x100000001B3)  # FNV's 64-bit prime: odd, so its powers never vanish
_powers_cache = np.ones(1, dtype=np.uint64)


def _powers(count: int) -> Hashes:
    """P**0 .. P**(count - 1) modulo 2**64 (kept for the longest string so far)."""
    global _powers_cache
    powers = _powers_cache  # one read: uploads profile in threads of their own
    if len(powers) < count:
        grown = np.full(max(count, 2 * len(powers)), _P, dtype=np.uint64)
        grown[0] = 1
        powers = _powers_cache = np.cumprod(grown, dtype=np.uint64)
    return powers


class Distinct:
    """Distinct count of hashes: exact up to `k` values, then a HyperLogLog
    estimate. With `counting`, also the occurrences of each value while exact.
    Memory: 8 bytes per slot (16 counting) while exact, then one byte per register."""

    def __init__(
        self, k: int, counting: bool = False, slot_bits: int = SLOT_BITS, register_bits: int = REGISTER_BITS
    ) -> None:
        self.k = k
        self.register_bits = register_bits
        self.kept = np.empty(0, dtype=np.uint64)  # sorted: every distinct hash, while exact
        self.exact = True
        # Direct-mapped table of seen hashes: slot = top slot_bits bits. A slot
        # is free while its content does not map to it (so 0 is a valid hash).
        self.shift = np.uint64(64 - slot_bits)
        self.table = np.zeros(1 << slot_bits, dtype=np.uint64)
        self.table[0] = np.uint64(1) << np.uint64(63)
        self.slot_counts = np.zeros(1 << slot_bits, dtype=np.int64) if counting else None
        self.extra: dict[int, int] = {}  # counts of hashes whose slot another one holds
        self.registers: npt.NDArray[np.uint8] | None = None  # the HyperLogLog, once past k

    def add(self, hashes: Hashes) -> None:
        if self.registers is not None:
            _update(self.registers, hashes)
            return
        slot = (hashes >> self.shift).astype(np.intp)
        seen = self.table[slot] == hashes
        if self.slot_counts is not None:
            self.slot_counts += np.bincount(slot[seen], minlength=len(self.table))
        if seen.all():
            return
        values: Hashes
        counts: Counts
        values, counts = np.unique(hashes[~seen], return_counts=True)
        at = np.searchsorted(self.kept, values)
        if len(self.kept):  # seen before, though another hash holds their slot
            fresh = self.kept[np.minimum(at, len(self.kept) - 1)] != values
            if self.slot_counts is not None:
                self._count_aside(values[~fresh], counts[~fresh])
            values, counts, at = values[fresh], counts[fresh], at[fresh]
        if len(values) == 0:
            return
        if len(self.kept) + len(values) > self.k:
            self._estimate(np.concatenate([self.kept, values]))
            return
        self.kept = np.insert(self.kept, at, values)
        self._claim(values, counts)

    def _claim(self, values: Hashes, counts: Counts) -> None:
        """Record new values in free slots of the table; count the rest aside."""
        slots = (values >> self.shift).astype(np.intp)
        free = (self.table[slots] >> self.shift).astype(np.intp) != slots
        self.table[slots[free]] = values[free]  # values sharing a free slot: one wins
        if self.slot_counts is None:
            return
        held = self.table[slots] == values
        np.add.at(self.slot_counts, slots[held], counts[held])
        self._count_aside(values[~held], counts[~held])

    def _count_aside(self, values: Hashes, counts: Counts) -> None:
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self.extra[value] = self.extra.get(value, 0) + count

    def _estimate(self, every: Hashes) -> None:
        """Past k values: the HyperLogLog from here on, seeded with all seen."""
        self.exact = False
        self.slot_counts = None
        self.extra = {}
        self.kept = np.empty(0, dtype=np.uint64)
        self.table = np.empty(0, dtype=np.uint64)
        self.registers = np.zeros(1 << self.register_bits, dtype=np.uint8)
        _update(self.registers, every)

    def count(self) -> int:
        if self.registers is None:
            return len(self.kept)
        return round(_estimate_count(self.registers))

    def counts(self) -> tuple[Hashes, Counts]:
        """(hashes, occurrences) of every value, while exact and counting."""
        assert self.slot_counts is not None
        owned = (self.table >> self.shift).astype(np.intp) == np.arange(len(self.table))
        hashes = np.concatenate([self.table[owned], np.fromiter(self.extra, dtype=np.uint64, count=len(self.extra))])
        counts = np.concatenate(
            [self.slot_counts[owned], np.fromiter(self.extra.values(), dtype=np.int64, count=len(self.extra))]
        )
        return hashes, counts


def _update(registers: npt.NDArray[np.uint8], hashes: Hashes) -> None:
    """HyperLogLog: the register named by a hash's top bits keeps the largest
    rank (leading zeros + 1) of its other bits."""
    bits = len(registers).bit_length() - 1
    index = (hashes >> np.uint64(64 - bits)).astype(np.intp)
    rest = (hashes << np.uint64(bits)) | np.uint64(1 << (bits - 1))  # never 0: rank <= 65 - bits
    # floor(log2(rest)) is the exponent of rest as a float64; rounding up to the
    # next power of two moves it by one only within 2**-53 of that power.
    exponent = (rest.astype(np.float64).view(np.uint64) >> np.uint64(52)).astype(np.int16)
    np.maximum.at(registers, index, (1023 + 64 - exponent).astype(np.uint8))


def _estimate_count(registers: npt.NDArray[np.uint8]) -> float:
    """Ertl's improved estimator ("New cardinality estimation algorithms for
    HyperLogLog sketches", 2017): unbiased from a few values to 2**64 without
    the empirical tables of HyperLogLog++ (the classic estimate, switching
    from linear counting, errs by 2-3 % around 2.5 x 16,384 values)."""
    m = len(registers)
    q = 65 - m.bit_length()  # 64 - index bits; rank q + 1: the q bits after the index were all zero
    histogram = np.bincount(registers, minlength=q + 2).tolist()
    z = m * _tau(1 - histogram[q + 1] / m)
    for k in range(q, 0, -1):
        z = 0.5 * (z + histogram[k])
    z += m * _sigma(histogram[0] / m)
    return float(m * m / (2 * np.log(2) * z))


def _sigma(x: float) -> float:
    if x == 1.0:
        return float("inf")
    y, z = 1.0, x
    while True:
        x *= x
        before = z
        z += x * y
        y += y
        if z == before:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1 - x
    while True:
        x = x**0.5
        before = z
        y *= 0.5
        z -= (1 - x) ** 2 * y
        if z == before:
            return z / 3


def unmix(hashes: Hashes) -> Hashes:
    """The keys `mix` turned into `hashes` (its inverse): the values behind counts."""
    out = hashes ^ (hashes >> _S33)  # a shift by half the width or more undoes itself
    out *= _INV_C2
    out ^= out >> _S33
    out *= _INV_C1
    out ^= out >> _S33
    return out


_INV_C1 = np.uint64(pow(int(_C1), -1, 1 << 64))
_INV_C2 = np.uint64(pow(int(_C2), -1, 1 << 64))
