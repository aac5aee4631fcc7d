"""core/split.py: time-based train / holdout split with a gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_recipes.core.split import SplitError, time_split

pytestmark = pytest.mark.unit


def _hourly(days: int = 10, fraud_every: int = 7, end_extra: list[str] | None = None) -> pd.DataFrame:
    """One row per hour from 2024-01-01 00:00 for ``days`` days; every ``fraud_every``-th row is fraud."""
    stamps = pd.date_range("2024-01-01", periods=days * 24, freq="h", tz="UTC")
    if end_extra:
        stamps = stamps.append(pd.DatetimeIndex(end_extra, tz="UTC"))
    n = len(stamps)
    return pd.DataFrame(
        {
            "transaction_id": np.arange(1, n + 1),
            "event_timestamp": stamps,
            "is_fraud": (np.arange(n) % fraud_every == 0).astype(np.int64),
        }
    )


def test_holdout_is_exactly_the_last_n_calendar_days() -> None:
    frame = _hourly()

    _, holdout = time_split(frame, holdout_days=3, gap_hours=12)

    days = set(holdout["event_timestamp"].dt.strftime("%Y-%m-%d"))
    assert days == {"2024-01-08", "2024-01-09", "2024-01-10"}
    # Every row of those days is in the holdout.
    assert len(holdout) == 3 * 24
    assert holdout["event_timestamp"].min() == pd.Timestamp("2024-01-08", tz="UTC")


def test_gap_keeps_train_away_from_the_holdout_start() -> None:
    frame = _hourly()

    train, holdout = time_split(frame, holdout_days=3, gap_hours=12)

    holdout_start = pd.Timestamp("2024-01-08", tz="UTC")
    assert train["event_timestamp"].max() < holdout_start - pd.Timedelta(hours=12)
    # 7 days before the holdout minus the 12 h gap, at one row per hour; exactly the gap's 12 rows are dropped.
    assert len(train) == 7 * 24 - 12
    assert len(frame) - len(train) - len(holdout) == 12


def test_zero_gap_uses_every_row() -> None:
    frame = _hourly()

    train, holdout = time_split(frame, holdout_days=3, gap_hours=0)

    assert len(train) + len(holdout) == len(frame)
    assert train["event_timestamp"].max() == pd.Timestamp("2024-01-07 23:00", tz="UTC")


def test_sides_do_not_overlap() -> None:
    frame = _hourly()

    train, holdout = time_split(frame, holdout_days=2, gap_hours=24)

    assert not set(train["transaction_id"]) & set(holdout["transaction_id"])
    assert train["event_timestamp"].max() < holdout["event_timestamp"].min()


def test_a_last_day_with_a_single_row_counts_as_a_holdout_day() -> None:
    # The data ends at 01-11 00:00 exactly: 01-11 is the last (partial) day.
    frame = _hourly(end_extra=["2024-01-11 00:00"])

    _, holdout = time_split(frame, holdout_days=2, gap_hours=0)

    assert set(holdout["event_timestamp"].dt.strftime("%Y-%m-%d")) == {"2024-01-10", "2024-01-11"}
    assert len(holdout) == 24 + 1


def test_input_order_does_not_matter_and_index_is_reset() -> None:
    frame = _hourly()
    shuffled = frame.sample(frac=1.0, random_state=0)

    train, holdout = time_split(shuffled, holdout_days=3, gap_hours=12)
    expected_train, expected_holdout = time_split(frame, holdout_days=3, gap_hours=12)

    assert set(train["transaction_id"]) == set(expected_train["transaction_id"])
    assert set(holdout["transaction_id"]) == set(expected_holdout["transaction_id"])
    assert list(holdout.index) == list(range(len(holdout)))


def test_empty_train_side_raises() -> None:
    with pytest.raises(SplitError, match="train split is empty"):
        time_split(_hourly(), holdout_days=10, gap_hours=0)


def test_gap_eating_all_training_data_raises() -> None:
    with pytest.raises(SplitError, match="train"):
        time_split(_hourly(), holdout_days=3, gap_hours=7 * 24)


def test_single_class_holdout_raises() -> None:
    frame = _hourly()
    frame.loc[frame["event_timestamp"] >= pd.Timestamp("2024-01-08", tz="UTC"), "is_fraud"] = 0

    with pytest.raises(SplitError, match="holdout split has only one class"):
        time_split(frame, holdout_days=3, gap_hours=12)


def test_single_class_train_raises() -> None:
    frame = _hourly()
    frame.loc[frame["event_timestamp"] < pd.Timestamp("2024-01-08", tz="UTC"), "is_fraud"] = 0

    with pytest.raises(SplitError, match="train split has only one class"):
        time_split(frame, holdout_days=3, gap_hours=12)


def test_custom_label_column() -> None:
    frame = _hourly().rename(columns={"is_fraud": "target"})

    train, holdout = time_split(frame, holdout_days=3, gap_hours=0, label="target")

    assert train["target"].nunique() == holdout["target"].nunique() == 2


def test_split_error_is_a_value_error() -> None:
    assert issubclass(SplitError, ValueError)
