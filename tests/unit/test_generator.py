"""core/generator.py: seeded synthetic transactions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlops_recipes.core.generator import CHANNELS, TRANSACTION_COLUMNS, generate_transactions, window_end
from mlops_recipes.params import DataParams, DriftParams

pytestmark = pytest.mark.unit

TODAY = dt.date(2024, 3, 1)
SMALL = DataParams(n_customers=300, days=20)


@pytest.fixture(scope="module")
def default_frame() -> pd.DataFrame:
    """Default-sized data (~100k rows, well under a second): for rates that need volume."""
    return generate_transactions(DataParams(), today=TODAY)


def _is_night(frame: pd.DataFrame) -> pd.Series:
    hour = frame["event_timestamp"].dt.hour
    return (hour < 6) | (hour >= 22)


def test_same_seed_and_day_give_identical_frames() -> None:
    first = generate_transactions(SMALL, today=TODAY)
    second = generate_transactions(SMALL, today=TODAY)

    pd.testing.assert_frame_equal(first, second)


def test_different_seeds_give_different_data() -> None:
    first = generate_transactions(SMALL, today=TODAY)
    second = generate_transactions(SMALL.model_copy(update={"seed": SMALL.seed + 1}), today=TODAY)

    assert not first.equals(second)
    assert first["amount"].head(50).tolist() != second["amount"].head(50).tolist()


def test_window_end_is_midnight_utc_after_end_date_which_wins_over_today() -> None:
    assert window_end(SMALL, today=TODAY) == pd.Timestamp("2024-03-01", tz="UTC")
    pinned = SMALL.model_copy(update={"end_date": dt.date(2023, 6, 30)})
    assert window_end(pinned, today=TODAY) == pd.Timestamp("2023-06-30", tz="UTC")


def test_columns_and_dtypes(small_generated: pd.DataFrame) -> None:
    frame = small_generated

    assert list(frame.columns) == list(TRANSACTION_COLUMNS)
    assert str(frame["event_timestamp"].dt.tz) == "UTC"
    assert str(frame["account_created_at"].dt.tz) == "UTC"
    for column in ("transaction_id", "customer_id", "merchant_id", "is_fraud"):
        assert frame[column].dtype == np.int64, column
    assert frame["amount"].dtype == np.float64


def test_timestamps_lie_inside_the_window(small_generated: pd.DataFrame) -> None:
    end = pd.Timestamp(TODAY, tz="UTC")
    start = end - pd.Timedelta(days=SMALL.days)

    assert small_generated["event_timestamp"].min() >= start
    assert small_generated["event_timestamp"].max() < end


def test_rows_sorted_by_time_with_ids_one_to_n(small_generated: pd.DataFrame) -> None:
    frame = small_generated

    assert frame["event_timestamp"].is_monotonic_increasing
    np.testing.assert_array_equal(frame["transaction_id"], np.arange(1, len(frame) + 1))


def test_ids_in_range_and_values_plausible(small_generated: pd.DataFrame) -> None:
    frame = small_generated

    assert frame["customer_id"].between(1, SMALL.n_customers).all()
    assert frame["merchant_id"].between(1, SMALL.n_merchants).all()
    assert (frame["amount"] > 0).all()
    assert set(frame["is_fraud"].unique()) <= {0, 1}


def test_accounts_exist_before_their_transactions(small_generated: pd.DataFrame) -> None:
    assert (small_generated["account_created_at"] <= small_generated["event_timestamp"]).all()


def test_account_creation_is_fixed_per_customer(small_generated: pd.DataFrame) -> None:
    assert (small_generated.groupby("customer_id")["account_created_at"].nunique() == 1).all()


def test_channels_come_from_the_known_set(small_generated: pd.DataFrame) -> None:
    assert set(small_generated["channel"].unique()) <= set(CHANNELS)


def test_fraud_rate_is_realistic_at_default_params(default_frame: pd.DataFrame) -> None:
    assert 0.005 <= default_frame["is_fraud"].mean() <= 0.05


def test_fraud_amounts_are_higher_than_legit(default_frame: pd.DataFrame) -> None:
    median = default_frame.groupby("is_fraud")["amount"].median()

    assert median[1] > 2 * median[0]


def test_fraud_is_more_often_at_night_and_online(default_frame: pd.DataFrame) -> None:
    fraud = default_frame["is_fraud"] == 1
    night = _is_night(default_frame)
    online = default_frame["channel"] == "online"

    assert night[fraud].mean() > 2 * night[~fraud].mean()
    assert online[fraud].mean() > 1.5 * online[~fraud].mean()


def test_amount_scale_scales_amounts() -> None:
    base = generate_transactions(SMALL, today=TODAY)
    scaled = generate_transactions(SMALL.model_copy(update={"drift": DriftParams(amount_scale=2.0)}), today=TODAY)

    ratio = scaled["amount"].median() / base["amount"].median()
    assert ratio == pytest.approx(2.0, rel=0.05)


def test_fraud_multiplier_zero_leaves_only_label_noise() -> None:
    frame = generate_transactions(SMALL.model_copy(update={"drift": DriftParams(fraud_multiplier=0.0)}), today=TODAY)

    # No compromised cards; only the ~0.05% label noise can flip a legit row.
    assert frame["is_fraud"].mean() < 0.003


def test_fraud_multiplier_raises_fraud_volume() -> None:
    base = generate_transactions(SMALL, today=TODAY)
    more = generate_transactions(SMALL.model_copy(update={"drift": DriftParams(fraud_multiplier=2.0)}), today=TODAY)

    assert more["is_fraud"].sum() > 1.5 * base["is_fraud"].sum()


def test_online_share_shift_moves_the_channel_mix() -> None:
    base = generate_transactions(SMALL, today=TODAY)
    shifted = generate_transactions(
        SMALL.model_copy(update={"drift": DriftParams(online_share_shift=0.3)}), today=TODAY
    )

    def legit_online(frame: pd.DataFrame) -> float:
        return float((frame.loc[frame["is_fraud"] == 0, "channel"] == "online").mean())

    # Legit online share is 0.35 by construction; the shift adds 0.3.
    assert legit_online(shifted) - legit_online(base) == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("seed", [42, 7])
def test_the_window_end_looks_like_its_middle(seed: int) -> None:
    # The last calendar day used to be thin (5,836 transactions and 7 frauds against 9,131 and 200 the day before):
    # bursts never started on it and new accounts never reached it.
    frame = generate_transactions(DataParams(seed=seed, n_customers=3000), today=dt.date(2026, 12, 1))
    daily = frame.groupby(frame["event_timestamp"].dt.floor("D"))["is_fraud"].agg(["size", "sum"])
    middle, last = daily.iloc[1:-1], daily.iloc[-1]
    assert len(daily) == 60
    for column in ("size", "sum"):
        low, high = middle[column].mean() - 3 * middle[column].std(), middle[column].mean() + 3 * middle[column].std()
        assert low <= last[column] <= high, (column, last[column], low, high)
    assert middle["size"].min() * 0.9 <= last["size"]
