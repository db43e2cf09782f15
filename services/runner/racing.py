"""How a run spends its time: racing hopeless candidates out after their
first folds, successive halving on row samples for large tables, and a
prediction of each candidate's time so that none starts that cannot end
inside the budget. Plain Python and numpy: nothing here knows of aikit or gRPC.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# Racing: a candidate is stopped once it has run RACE_AFTER_FOLDS folds and
# even its best fold is below the best candidate's mean by one standard
# deviation of that candidate's folds. A candidate as good as the best is
# stopped so only when two of its folds both fall a standard deviation low
# (about 2.5 % for normal folds).
RACE_AFTER_FOLDS = 2
# Successive halving (asynchronous, Li et al. 2020, "A System for Massively
# Parallel Hyperparameter Tuning"): each rung has ETA times the rows of the
# one below, and a candidate is promoted when it is in the top 1/ETA of the
# results of its rung.
ETA = 4
MIN_RUNG_ROWS = 1_500


def race_threshold(best_mean: float, best_std: float) -> float:
    """aikit's stopping_threshold (in its sign: greater is better) for a new
    candidate, from the best candidate's fold scores."""
    return best_mean - best_std - 1e-9


def rung_sizes(rows: int) -> list[int]:
    """Rows of each rung, smallest first; the last is every search row."""
    sizes = [rows]
    while sizes[0] // ETA >= MIN_RUNG_ROWS:
        sizes.insert(0, sizes[0] // ETA)
    return sizes


def nested_samples(
    codes: npt.NDArray[np.intp] | None, sizes: list[int], seed: int
) -> list[npt.NDArray[np.intp] | None]:
    """Sorted row positions of each rung's sample (None for the top rung: every
    row). Samples are nested, and stratified when class codes are given (each
    class keeps its share, at least one row)."""
    rows = sizes[-1]
    rng = np.random.RandomState(seed % 2**32)
    if codes is None:
        order = rng.permutation(rows)
        return [np.sort(order[:size]) for size in sizes[:-1]] + [None]
    # A random rank within each class, then rows taken class by class in
    # proportion: the samples of a rung contain those of the rungs below.
    rank = np.empty(rows, dtype=np.int64)
    counts = np.bincount(codes)
    for label in range(len(counts)):
        members = np.flatnonzero(codes == label)
        rank[members] = rng.permutation(len(members))
    out: list[npt.NDArray[np.intp] | None] = []
    for size in sizes[:-1]:
        share = np.maximum(np.round(counts * size / rows).astype(np.int64), 1)
        out.append(np.flatnonzero(rank < share[codes]))
    return [*out, None]


@dataclass
class Rung:
    size: int
    results: dict[str, float] = field(default_factory=dict)
    """job id -> mean score (aikit's sign) of the candidates that completed here."""
    promoted: set[str] = field(default_factory=set)
    best: tuple[float, float] | None = None
    """(mean, std) of the best complete cross-validation at this rung."""


class Halving:
    """The rungs of a run and who is promoted next."""

    def __init__(self, rows: int, codes: npt.NDArray[np.intp] | None, seed: int) -> None:
        sizes = rung_sizes(rows)
        self.rungs = [Rung(size) for size in sizes]
        self.samples = nested_samples(codes, sizes, seed)

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def record(self, job_id: str, rung: int, mean: float | None, std: float | None, complete: bool) -> None:
        """A candidate's result at a rung (mean None: it failed)."""
        if mean is None:
            return
        level = self.rungs[rung]
        level.results[job_id] = mean
        if complete and std is not None and (level.best is None or mean > level.best[0]):
            level.best = (mean, std)

    def promotion(self) -> tuple[str, int] | None:
        """(job id, rung to run it at) of a candidate to promote, highest rung first."""
        for index in range(self.top - 1, -1, -1):
            level = self.rungs[index]
            ranked = sorted(level.results.items(), key=lambda item: (-item[1], item[0]))
            for job_id, _ in ranked[: len(ranked) // ETA]:
                if job_id not in level.promoted:
                    level.promoted.add(job_id)
                    return job_id, index + 1
        return None

    def threshold(self, rung: int) -> float | None:
        """The racing threshold at a rung, once a candidate completed there."""
        best = self.rungs[rung].best
        return None if best is None else race_threshold(*best)


class Durations:
    """Predicts a candidate's evaluation time from those measured in the run:
    the median seconds per unit of work of its model family (of any family
    while its own has none), times its work (rows, times trees for forests
    and boosting)."""

    def __init__(self) -> None:
        self.per_unit: dict[str, list[float]] = defaultdict(list)

    def record(self, family: str, work: float, seconds: float) -> None:
        if work > 0 and seconds > 0:
            self.per_unit[family].append(seconds / work)

    def predict(self, family: str, work: float, any_family: bool = True) -> float | None:
        """Seconds, or None with nothing measured (for `family` alone when not `any_family`)."""
        measured = self.per_unit.get(family)
        if not measured and any_family:
            measured = [v for values in self.per_unit.values() for v in values]
        if not measured:
            return None
        return statistics.median(measured) * work
