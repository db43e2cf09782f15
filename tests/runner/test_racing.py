"""How a run spends its time: rungs, samples, promotions, racing thresholds
and predicted durations (plain functions, no services)."""

from __future__ import annotations

import numpy as np
import pytest

from services.runner import racing


def test_rungs_grow_by_eta_up_to_every_row():
    assert racing.rung_sizes(1_000) == [1_000]
    assert racing.rung_sizes(6_000) == [1_500, 6_000]
    assert racing.rung_sizes(40_000) == [2_500, 10_000, 40_000]


def test_samples_are_nested_stratified_and_keep_every_class():
    codes = np.array([0] * 38_000 + [1] * 1_997 + [2] * 3)
    np.random.RandomState(0).shuffle(codes)
    sizes = racing.rung_sizes(len(codes))
    samples = racing.nested_samples(codes, sizes, seed=7)
    assert samples[-1] is None
    small, middle = samples[0], samples[1]
    assert small is not None and middle is not None
    assert set(small) <= set(middle)
    assert abs(len(small) - 2_500) < 5 and abs(len(middle) - 10_000) < 5
    assert set(codes[small]) == {0, 1, 2}  # the 3-row class keeps one row
    assert abs((codes[middle] == 1).mean() - 0.05) < 0.002
    again = racing.nested_samples(codes, sizes, seed=7)[0]
    assert again is not None and (again == small).all()


def test_promotion_takes_the_top_quarter_once_highest_rung_first():
    halving = racing.Halving(40_000, None, seed=0)
    for i, score in enumerate([0.5, 0.6, 0.7, 0.9, 0.8, 0.4, 0.3, 0.2]):
        halving.record(f"j{i}", 0, score, 0.01, complete=True)
    assert halving.promotion() == ("j3", 1)
    assert halving.promotion() == ("j4", 1)  # 8 results: the top 2
    assert halving.promotion() is None
    halving.record("j3", 1, 0.85, 0.01, complete=True)
    for i in range(3):
        halving.record(f"k{i}", 1, 0.1, 0.01, complete=True)
    assert halving.promotion() == ("j3", 2)  # rung 1 has 4 results: its best goes up first


def test_a_failed_or_raced_candidate_sets_no_threshold():
    halving = racing.Halving(1_000, None, seed=0)
    assert halving.threshold(0) is None
    halving.record("a", 0, None, None, complete=False)
    halving.record("b", 0, 0.95, 0.01, complete=False)  # stopped early: not the reference
    assert halving.threshold(0) is None
    halving.record("c", 0, 0.90, 0.02, complete=True)
    assert halving.threshold(0) == pytest.approx(0.88)


def test_durations_are_predicted_per_family_then_from_any():
    durations = racing.Durations()
    assert durations.predict("RF", 1_000) is None
    durations.record("RF", 1_000, 2.0)
    durations.record("RF", 2_000, 2.0)
    durations.record("RF", 1_000, 4.0)
    assert durations.predict("RF", 1_000) == pytest.approx(2.0)
    assert durations.predict("LGBM", 500) == pytest.approx(1.0)  # no LGBM yet: every family's median
