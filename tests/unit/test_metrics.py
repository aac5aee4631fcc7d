"""core/metrics.py: fraud metrics and DVC plot tables, on hand-computed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_recipes.core.metrics import (
    curves,
    expected_calibration_error,
    holdout_metrics,
    precision_at_k,
    recall_at_fpr,
)

pytestmark = pytest.mark.unit

# Four legit, two fraud. Ranked by score: F(0.9) L(0.8) F(0.4) L(0.3) L(0.2) L(0.1).
Y = np.array([0, 0, 0, 0, 1, 1])
S = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.4])
OPTIONS = {"max_fpr": 0.25, "top_k": 2, "threshold": 0.5, "bins": 2}


# ---------------------------------------------------------------- recall_at_fpr


@pytest.mark.parametrize(
    ("max_fpr", "recall"),
    [
        (0.0, 0.5),  # threshold 0.9: one fraud, no false positive
        (0.24, 0.5),  # the second fraud needs the 0.8 legit (fpr 1/4) above it
        (0.25, 1.0),  # at or below the bound is allowed
        (1.0, 1.0),
    ],
)
def test_recall_at_fpr(max_fpr: float, recall: float) -> None:
    assert recall_at_fpr(Y, S, max_fpr) == pytest.approx(recall)


def test_recall_at_fpr_is_zero_when_the_top_score_is_legit() -> None:
    y = np.array([0, 1, 0, 0])
    scores = np.array([0.9, 0.5, 0.2, 0.1])

    assert recall_at_fpr(y, scores, 0.0) == 0.0


def test_recall_at_fpr_with_tied_scores() -> None:
    # Three tie groups, each one fraud + one legit. Thresholds 0.9 / 0.8 / 0.7 reach
    # (fpr, recall) = (1/3, 1/3), (2/3, 2/3), (1, 1): at fpr <= 0.7 the best recall is 2/3.
    y = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.9, 0.8, 0.8, 0.7, 0.7])

    assert recall_at_fpr(y, scores, 0.7) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- precision_at_k


@pytest.mark.parametrize(("k", "precision"), [(1, 1.0), (2, 0.5), (3, 2 / 3), (4, 0.5), (6, 2 / 6)])
def test_precision_at_k(k: int, precision: float) -> None:
    assert precision_at_k(Y, S, k) == pytest.approx(precision)


def test_precision_at_k_larger_than_the_data_uses_all_rows() -> None:
    assert precision_at_k(Y, S, 100) == pytest.approx(2 / 6)


# ---------------------------------------------------------------- expected_calibration_error


def test_ece_by_hand() -> None:
    y = np.array([0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.9])

    # Bin [0, .5): mean score .15, observed .5 -> .35, weight 1/2. Bin [.5, 1]: .75 vs 1 -> .25, weight 1/2.
    assert expected_calibration_error(y, scores, 2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.25)


def test_ece_is_zero_when_each_bin_is_calibrated() -> None:
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    scores = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])

    assert expected_calibration_error(y, scores, 10) == pytest.approx(0.0)


def test_ece_bins_are_closed_on_the_left_and_one_falls_in_the_last_bin() -> None:
    # 0.5 belongs to [.5, 1] and 1.0 to the last bin (not a bin of its own): two bins of one row each.
    y = np.array([0, 1, 1])
    scores = np.array([0.4, 0.5, 1.0])

    # Bin 0: |0 - .4| * 1/3; bin 1: |1 - .75| * 2/3.
    assert expected_calibration_error(y, scores, 2) == pytest.approx(0.4 / 3 + 0.25 * 2 / 3)


# ---------------------------------------------------------------- holdout_metrics


def test_holdout_metrics_by_hand() -> None:
    metrics = holdout_metrics(Y, S, **OPTIONS)

    # Pairs (fraud, legit) ranked correctly: 0.9 beats all 4; 0.4 beats 3 of 4 -> 7/8.
    assert metrics["roc_auc"] == pytest.approx(7 / 8)
    # AP: precision 1 at the first fraud, 2/3 at the second, each worth recall 1/2.
    assert metrics["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert metrics["recall_at_fpr"] == pytest.approx(1.0)
    assert metrics["precision_at_k"] == pytest.approx(0.5)
    # Threshold 0.5 flags 0.9 (fraud) and 0.8 (legit).
    assert metrics["precision_at_threshold"] == pytest.approx(0.5)
    assert metrics["recall_at_threshold"] == pytest.approx(0.5)
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.09 + 0.64 + 0.01 + 0.36) / 6)
    assert metrics["fraud_rate"] == pytest.approx(2 / 6)
    assert metrics["rows"] == 6.0
    assert all(isinstance(value, float) for value in metrics.values())


def test_perfect_scorer() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    scores = y * 0.6 + 0.2  # fraud 0.8, legit 0.2

    metrics = holdout_metrics(y, scores, **OPTIONS)

    assert metrics["roc_auc"] == 1.0
    assert metrics["pr_auc"] == 1.0
    assert metrics["recall_at_fpr"] == 1.0
    assert metrics["precision_at_threshold"] == 1.0
    assert metrics["recall_at_threshold"] == 1.0


def test_nothing_flagged_gives_zero_precision_not_an_error() -> None:
    metrics = holdout_metrics(Y, S, **(OPTIONS | {"threshold": 0.95}))

    assert metrics["precision_at_threshold"] == 0.0
    assert metrics["recall_at_threshold"] == 0.0


def test_random_scores_give_pr_auc_near_the_base_rate() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(20_000) < 0.1).astype(np.int64)
    scores = rng.random(20_000)

    metrics = holdout_metrics(y, scores, **OPTIONS)

    assert metrics["pr_auc"] == pytest.approx(y.mean(), abs=0.02)
    assert metrics["roc_auc"] == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("label", [0, 1])
def test_holdout_metrics_need_both_classes(label: int) -> None:
    with pytest.raises(ValueError, match="both classes"):
        holdout_metrics(np.full(5, label), np.linspace(0.1, 0.9, 5), **OPTIONS)


# ---------------------------------------------------------------- curves


def test_curves_tables_and_columns() -> None:
    tables = curves(Y, S, threshold=0.5, bins=2)

    assert set(tables) == {"roc", "precision_recall", "calibration", "confusion"}
    assert list(tables["roc"].columns) == ["fpr", "tpr"]
    assert list(tables["precision_recall"].columns) == ["recall", "precision"]
    assert list(tables["calibration"].columns) == ["bin", "mean_score", "observed_rate", "count"]
    assert list(tables["confusion"].columns) == ["actual", "predicted"]


def test_curves_contents_by_hand() -> None:
    tables = curves(Y, S, threshold=0.5, bins=2)

    calibration = tables["calibration"].set_index("bin")
    # Bin 0: 0.1, 0.2, 0.3 (legit), 0.4 (fraud). Bin 1: 0.8 (legit), 0.9 (fraud).
    assert calibration["count"].to_dict() == {0: 4, 1: 2}
    assert calibration.loc[0, "mean_score"] == pytest.approx(0.25)
    assert calibration.loc[0, "observed_rate"] == pytest.approx(0.25)
    assert calibration.loc[1, "observed_rate"] == pytest.approx(0.5)
    confusion = tables["confusion"]
    assert len(confusion) == len(Y)
    assert confusion.value_counts().to_dict() == {
        ("legit", "legit"): 3,
        ("fraud", "fraud"): 1,
        ("fraud", "legit"): 1,
        ("legit", "fraud"): 1,
    }
    roc = tables["roc"]
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[0]) == (0.0, 0.0)
    assert (roc["fpr"].iloc[-1], roc["tpr"].iloc[-1]) == (1.0, 1.0)


def test_long_curves_are_thinned_keeping_the_ends() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(5_000) < 0.3).astype(np.int64)
    scores = np.clip(0.3 * y + rng.normal(0.35, 0.2, 5_000), 0.0, 1.0)

    tables = curves(y, scores, threshold=0.5, bins=10)

    for name in ("roc", "precision_recall"):
        table = tables[name]
        assert 100 < len(table) <= 400, name
    roc = tables["roc"]
    assert (roc["fpr"].iloc[0], roc["tpr"].iloc[-1]) == (0.0, 1.0)
    assert roc["fpr"].is_monotonic_increasing
    assert tables["calibration"]["count"].sum() == 5_000
    assert len(tables["confusion"]) == 5_000
