"""core/drift.py: reference histograms, PSI and the sliding window, on arrays with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlops_recipes.core.drift import DriftReference, DriftWindow, Histogram, bin_counts, histogram, psi

pytestmark = pytest.mark.unit


def test_bin_counts_cut_right_closed_below_and_count_nan_last() -> None:
    counts = bin_counts(np.array([0.0, 1.0, 1.5, 2.0, 5.0, np.nan]), np.array([1.0, 2.0]))
    # bins: (-inf, 1) [1, 2) [2, inf) then missing
    assert counts.tolist() == [1, 2, 2, 1]


def test_psi_is_zero_for_identical_shares_and_grows_with_the_shift() -> None:
    expected = np.array([0.25, 0.25, 0.25, 0.25, 0.0])
    assert psi(expected, np.array([25, 25, 25, 25, 0])) == pytest.approx(0.0, abs=1e-12)
    small = psi(expected, np.array([30, 25, 25, 20, 0]))
    large = psi(expected, np.array([70, 10, 10, 10, 0]))
    assert 0 < small < 0.1 < 0.2 < large
    # By hand: sum((a - e) * ln(a / e)) over the four bins (the empty missing bin is floored on both sides).
    a = np.array([0.7, 0.1, 0.1, 0.1])
    assert large == pytest.approx(float(np.sum((a - 0.25) * np.log(a / 0.25))), rel=1e-9)
    assert psi(expected, np.zeros(5)) == 0.0  # no rows yet: no drift figure


def test_quantile_edges_for_a_continuous_variable() -> None:
    values = np.random.default_rng(0).lognormal(3, 1, 10_000)
    h = histogram(values, bins=10)
    assert len(h.edges) == 9
    assert np.allclose(h.shares[:-1], 0.1, atol=0.01)
    assert h.shares[-1] == 0.0
    assert h.psi(np.random.default_rng(1).lognormal(3, 1, 5_000)) < 0.02
    assert h.psi(np.random.default_rng(1).lognormal(3, 1, 5_000) * 3) > 1.0


def test_a_binary_flag_gets_one_bin_per_value_so_a_shift_shows() -> None:
    flags = (np.random.default_rng(0).random(10_000) < 0.1).astype(float)  # 10 % ones: quantiles are all 0
    h = histogram(flags, bins=10)
    assert h.edges == (0.5,)
    assert h.psi(np.ones(100)) > 1.0
    assert h.psi(flags[:2000]) < 0.01


def test_missing_values_have_their_own_share() -> None:
    values = np.array([1.0, 2.0, 3.0, np.nan] * 250)
    h = histogram(values)
    assert h.shares[-1] == pytest.approx(0.25)
    assert h.psi(np.array([np.nan] * 100)) > 1.0


def test_reference_round_trips_through_json_and_rejects_what_it_cannot_read() -> None:
    rng = np.random.default_rng(0)
    matrix = np.column_stack([rng.normal(size=500), rng.integers(0, 2, 500).astype(float)])
    reference = DriftReference.build(matrix, ["x", "flag"], rng.random(500))
    again = DriftReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again == reference
    with pytest.raises(ValueError, match="format"):
        DriftReference.from_dict({**reference.to_dict(), "version": 99})
    with pytest.raises(ValueError, match="shares"):
        Histogram.from_dict({"edges": [1.0, 2.0], "shares": [1.0]})
    with pytest.raises(ValueError, match="increasing"):
        Histogram.from_dict({"edges": [2.0, 1.0], "shares": [0.25, 0.25, 0.5, 0.0]})
    with pytest.raises(ValueError, match="columns"):
        DriftReference.build(matrix, ["x"], rng.random(500))


def test_window_keeps_the_latest_rows_and_reports_psi_per_feature() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(5_000, 2))
    reference = DriftReference.build(train, ["a", "b"], rng.random(5_000))
    window = DriftWindow(reference, ["a", "b"], capacity=1_000)
    assert window.report().rows == 0

    window.add(rng.normal(size=(600, 2)), rng.random(600))
    report = window.report()
    assert report.rows == 600
    assert max(report.features.values()) < 0.1
    assert report.score < 0.1

    # 1,000 shifted rows push every unshifted one out of the window: only column "a" moved.
    shifted = np.column_stack([rng.normal(3, 1, 1_000), rng.normal(size=1_000)])
    window.add(shifted[:700], rng.random(700))
    window.add(shifted[700:], rng.random(300))
    report = window.report()
    assert report.rows == 1_000
    assert report.features["a"] > 2.0
    assert report.features["b"] < 0.1


def test_window_takes_a_batch_larger_than_itself_and_refuses_unknown_features() -> None:
    rng = np.random.default_rng(0)
    reference = DriftReference.build(rng.normal(size=(100, 1)), ["a"], rng.random(100))
    window = DriftWindow(reference, ["a"], capacity=10)
    window.add(np.arange(25, dtype=float).reshape(-1, 1), np.zeros(25))
    assert window.report().rows == 10
    with pytest.raises(ValueError, match="no histogram"):
        DriftWindow(reference, ["a", "zzz"], capacity=10)
    with pytest.raises(ValueError, match="capacity"):
        DriftWindow(reference, ["a"], capacity=0)
    assert not math.isnan(window.report().score)
