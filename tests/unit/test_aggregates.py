"""core/aggregates.py: per-customer rolling state and per-merchant daily risk, on hand-built frames."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from mlops_recipes.core.aggregates import customer_stats, merchant_stats
from mlops_recipes.views.customer_stats import VIEW as CUSTOMER_VIEW
from mlops_recipes.views.merchant_stats import VIEW as MERCHANT_VIEW

pytestmark = pytest.mark.unit

CUSTOMER_FEATURES = CUSTOMER_VIEW.names
MERCHANT_FEATURES = MERCHANT_VIEW.names


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC).timestamp()


def _row(stats: pd.DataFrame, key: str, key_value: int, when: str) -> pd.Series:
    match = stats[(stats[key] == key_value) & (stats["event_timestamp"] == pd.Timestamp(when, tz="UTC"))]
    assert len(match) == 1, f"expected one row for {key}={key_value} at {when}, got {len(match)}"
    return match.iloc[0]


# ---------------------------------------------------------------- customer_stats

# Customer 1: five transactions placed on window boundaries; customer 2 interleaved with a huge amount.
CUSTOMER_ROWS = [
    {"customer_id": 1, "event_timestamp": "2024-01-01 00:00", "amount": 10.0},
    {"customer_id": 2, "event_timestamp": "2024-01-01 00:15", "amount": 1000.0, "account_created_at": "2023-12-31"},
    {"customer_id": 1, "event_timestamp": "2024-01-01 00:30", "amount": 20.0},
    {"customer_id": 1, "event_timestamp": "2024-01-01 01:00", "amount": 30.0},  # exactly 1 h after the first
    {"customer_id": 1, "event_timestamp": "2024-01-02 01:00", "amount": 40.0},  # exactly 24 h after the third
    {"customer_id": 1, "event_timestamp": "2024-01-08 00:30", "amount": 50.0},  # exactly 7 d after the second
]


@pytest.fixture
def customer_frame(make_transactions: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    return make_transactions(CUSTOMER_ROWS)


def test_customer_stats_has_all_feature_columns(customer_frame: pd.DataFrame) -> None:
    stats = customer_stats(customer_frame)

    assert list(stats.columns[:2]) == ["customer_id", "event_timestamp"]
    assert list(stats.columns[2:]) == list(CUSTOMER_FEATURES)  # the view's declared order
    assert len(stats) == len(customer_frame)


@pytest.mark.parametrize(
    ("when", "count_1h", "sum_1h", "count_24h", "sum_24h", "count_7d", "sum_7d"),
    [
        ("2024-01-01 00:00", 1, 10.0, 1, 10.0, 1, 10.0),
        ("2024-01-01 00:30", 2, 30.0, 2, 30.0, 2, 30.0),
        # (00:00, 01:00]: the first transaction sits exactly on the open edge and is out.
        ("2024-01-01 01:00", 2, 50.0, 3, 60.0, 3, 60.0),
        # (01-01 01:00, 01-02 01:00]: the 01:00 transaction is exactly 24 h old and is out.
        ("2024-01-02 01:00", 1, 40.0, 1, 40.0, 4, 100.0),
        # (01-01 00:30, 01-08 00:30]: 00:00 and the 00:30 boundary row are out.
        ("2024-01-08 00:30", 1, 50.0, 1, 50.0, 3, 120.0),
    ],
)
def test_rolling_counts_and_sums(
    customer_frame: pd.DataFrame,
    when: str,
    count_1h: int,
    sum_1h: float,
    count_24h: int,
    sum_24h: float,
    count_7d: int,
    sum_7d: float,
) -> None:
    row = _row(customer_stats(customer_frame), "customer_id", 1, when)

    assert (row["cust_txn_count_1h"], row["cust_amount_sum_1h"]) == (count_1h, pytest.approx(sum_1h))
    assert (row["cust_txn_count_24h"], row["cust_amount_sum_24h"]) == (count_24h, pytest.approx(sum_24h))
    assert (row["cust_txn_count_7d"], row["cust_amount_sum_7d"]) == (count_7d, pytest.approx(sum_7d))


def test_counts_are_integers(customer_frame: pd.DataFrame) -> None:
    stats = customer_stats(customer_frame)

    for name in ("1h", "24h", "7d"):
        assert stats[f"cust_txn_count_{name}"].dtype == np.int64


def test_customers_do_not_mix(customer_frame: pd.DataFrame) -> None:
    stats = customer_stats(customer_frame)

    other = _row(stats, "customer_id", 2, "2024-01-01 00:15")
    assert other["cust_txn_count_24h"] == 1
    assert other["cust_amount_sum_24h"] == pytest.approx(1000.0)
    assert other["cust_account_created_ts"] == _epoch("2023-12-31 00:00")
    # Customer 1's 00:30 row has 00:00 and 00:30 in its hour, never customer 2's 00:15.
    assert _row(stats, "customer_id", 1, "2024-01-01 00:30")["cust_amount_sum_1h"] == pytest.approx(30.0)


def test_thirty_day_mean_and_population_std(customer_frame: pd.DataFrame) -> None:
    row = _row(customer_stats(customer_frame), "customer_id", 1, "2024-01-08 00:30")

    # All five amounts 10..50: mean 30, population std sqrt(((20²+10²)*2 + 0)/5) = sqrt(200).
    assert row["cust_amount_mean_30d"] == pytest.approx(30.0)
    assert row["cust_amount_std_30d"] == pytest.approx(math.sqrt(200.0))


def test_single_transaction_has_zero_std(customer_frame: pd.DataFrame) -> None:
    row = _row(customer_stats(customer_frame), "customer_id", 1, "2024-01-01 00:00")

    assert row["cust_amount_mean_30d"] == pytest.approx(10.0)
    assert row["cust_amount_std_30d"] == 0.0


def test_thirty_day_window_drops_a_transaction_exactly_thirty_days_old(
    make_transactions: Callable[..., pd.DataFrame],
) -> None:
    frame = make_transactions(
        [
            {"customer_id": 3, "event_timestamp": "2024-01-01 12:00", "amount": 100.0},
            {"customer_id": 3, "event_timestamp": "2024-01-02 12:00", "amount": 300.0},
            {"customer_id": 3, "event_timestamp": "2024-01-31 12:00", "amount": 200.0},
        ]
    )

    row = _row(customer_stats(frame), "customer_id", 3, "2024-01-31 12:00")

    # (01-01 12:00, 01-31 12:00] holds 300 and 200 only.
    assert row["cust_amount_mean_30d"] == pytest.approx(250.0)
    assert row["cust_amount_std_30d"] == pytest.approx(50.0)


def test_last_txn_and_account_created_are_epoch_seconds(customer_frame: pd.DataFrame) -> None:
    stats = customer_stats(customer_frame)

    row = _row(stats, "customer_id", 1, "2024-01-02 01:00")
    assert row["cust_last_txn_ts"] == _epoch("2024-01-02 01:00")
    assert row["cust_account_created_ts"] == _epoch("2023-01-01 00:00")


def test_output_does_not_depend_on_input_order(customer_frame: pd.DataFrame) -> None:
    shuffled = customer_frame.sample(frac=1.0, random_state=3)

    pd.testing.assert_frame_equal(customer_stats(shuffled), customer_stats(customer_frame))


def test_duplicate_customer_timestamp_keeps_the_state_after_the_last(
    make_transactions: Callable[..., pd.DataFrame],
) -> None:
    frame = make_transactions(
        [
            {"customer_id": 4, "event_timestamp": "2024-01-05 10:00", "amount": 1.0},
            {"customer_id": 4, "event_timestamp": "2024-01-05 12:00", "amount": 5.0},
            {"customer_id": 4, "event_timestamp": "2024-01-05 12:00", "amount": 7.0},
        ]
    )

    stats = customer_stats(frame)

    assert len(stats) == 2
    row = _row(stats, "customer_id", 4, "2024-01-05 12:00")
    assert row["cust_txn_count_1h"] == 2
    assert row["cust_amount_sum_1h"] == pytest.approx(12.0)
    assert row["cust_txn_count_24h"] == 3
    assert row["cust_amount_sum_24h"] == pytest.approx(13.0)


# ---------------------------------------------------------------- merchant_stats

PRIOR = 2.0
MERCHANT_ROWS = [
    {"merchant_id": 1, "event_timestamp": "2024-01-01 10:00", "amount": 10.0, "is_fraud": 0},
    {"merchant_id": 2, "event_timestamp": "2024-01-02 08:00", "amount": 100.0, "is_fraud": 0},
    {"merchant_id": 1, "event_timestamp": "2024-01-03 12:00", "amount": 30.0, "is_fraud": 1},
    {"merchant_id": 3, "event_timestamp": "2024-01-03 00:00", "amount": 4.0, "is_fraud": 0},
    {"merchant_id": 3, "event_timestamp": "2024-01-03 23:59:59", "amount": 6.0, "is_fraud": 0},
    {"merchant_id": 1, "event_timestamp": "2024-01-10 00:00", "amount": 50.0, "is_fraud": 0},
]


@pytest.fixture
def merchant_frame(make_transactions: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    return make_transactions(MERCHANT_ROWS)


def test_merchant_rows_cover_every_merchant_from_the_second_day_to_the_day_after_the_last(
    merchant_frame: pd.DataFrame,
) -> None:
    stats = merchant_stats(merchant_frame, prior_weight=PRIOR)

    assert list(stats.columns) == ["merchant_id", "event_timestamp", *MERCHANT_FEATURES]
    expected_days = pd.date_range("2024-01-02", "2024-01-11", freq="D", tz="UTC")
    for merchant in (1, 2, 3):
        days = stats.loc[stats["merchant_id"] == merchant, "event_timestamp"]
        np.testing.assert_array_equal(days.to_numpy(), expected_days.to_numpy())
    # The first day (01-01) has no history: no row at all.
    assert stats["event_timestamp"].min() == pd.Timestamp("2024-01-02", tz="UTC")


def test_a_day_row_excludes_that_days_own_transactions(merchant_frame: pd.DataFrame) -> None:
    stats = merchant_stats(merchant_frame, prior_weight=PRIOR)

    # Merchant 1 has a fraud on 01-03; the row stamped 01-03 must only know 01-01's legit transaction.
    on_day = _row(stats, "merchant_id", 1, "2024-01-03")
    assert on_day["merch_txn_count_7d"] == 1
    assert on_day["merch_amount_mean_7d"] == pytest.approx(10.0)
    # Global window before 01-03: merchants 1 and 2, no fraud -> smoothed rate is exactly 0.
    assert on_day["merch_fraud_rate_7d"] == 0.0
    # Merchant 3 trades only on 01-03 (including 23:59:59): nothing yet in its 01-03 row.
    assert _row(stats, "merchant_id", 3, "2024-01-03")["merch_txn_count_7d"] == 0
    # The next day sees them.
    assert _row(stats, "merchant_id", 1, "2024-01-04")["merch_txn_count_7d"] == 2
    assert _row(stats, "merchant_id", 3, "2024-01-04")["merch_txn_count_7d"] == 2


def test_smoothed_fraud_rate_and_mean_amount(merchant_frame: pd.DataFrame) -> None:
    stats = merchant_stats(merchant_frame, prior_weight=PRIOR)

    # Window for 01-04 is 12-28..01-03: 5 transactions, 1 fraud -> global rate 1/5.
    global_rate = 1 / 5
    m1 = _row(stats, "merchant_id", 1, "2024-01-04")
    m2 = _row(stats, "merchant_id", 2, "2024-01-04")
    m3 = _row(stats, "merchant_id", 3, "2024-01-04")
    assert m1["merch_fraud_rate_7d"] == pytest.approx((1 + PRIOR * global_rate) / (2 + PRIOR))
    assert m2["merch_fraud_rate_7d"] == pytest.approx((0 + PRIOR * global_rate) / (1 + PRIOR))
    assert m3["merch_fraud_rate_7d"] == pytest.approx((0 + PRIOR * global_rate) / (2 + PRIOR))
    assert m1["merch_amount_mean_7d"] == pytest.approx(20.0)
    assert m2["merch_amount_mean_7d"] == pytest.approx(100.0)
    assert m3["merch_amount_mean_7d"] == pytest.approx(5.0)


def test_seven_day_window_slides(merchant_frame: pd.DataFrame) -> None:
    stats = merchant_stats(merchant_frame, prior_weight=PRIOR)
    m1 = {day: _row(stats, "merchant_id", 1, day) for day in ("2024-01-08", "2024-01-09", "2024-01-11")}

    # 01-08 covers 01-01..01-07: both early transactions.
    assert m1["2024-01-08"]["merch_txn_count_7d"] == 2
    # 01-09 covers 01-02..01-08: 01-01 has left the window.
    assert m1["2024-01-09"]["merch_txn_count_7d"] == 1
    assert m1["2024-01-09"]["merch_amount_mean_7d"] == pytest.approx(30.0)
    # 01-11 (the extra day after the data) covers 01-04..01-10: only the 01-10 transaction.
    assert m1["2024-01-11"]["merch_txn_count_7d"] == 1
    assert m1["2024-01-11"]["merch_amount_mean_7d"] == pytest.approx(50.0)


def test_merchant_without_traffic_gets_zero_count_nan_mean_and_the_global_rate(
    merchant_frame: pd.DataFrame,
) -> None:
    stats = merchant_stats(merchant_frame, prior_weight=PRIOR)

    # 01-10 covers 01-03..01-09: merchant 1 (1 fraud) and merchant 3 (2 legit) -> global 1/3; merchant 2 silent.
    quiet = _row(stats, "merchant_id", 2, "2024-01-10")
    assert quiet["merch_txn_count_7d"] == 0
    assert math.isnan(quiet["merch_amount_mean_7d"])
    assert quiet["merch_fraud_rate_7d"] == pytest.approx(1 / 3)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_zero_prior_weight_gives_the_raw_rate(merchant_frame: pd.DataFrame) -> None:
    stats = merchant_stats(merchant_frame, prior_weight=0.0)

    assert _row(stats, "merchant_id", 1, "2024-01-04")["merch_fraud_rate_7d"] == pytest.approx(0.5)
    assert _row(stats, "merchant_id", 3, "2024-01-04")["merch_fraud_rate_7d"] == 0.0
    # Without a prior, a merchant with no traffic has no rate at all (0/0), not a made-up 0.
    assert math.isnan(_row(stats, "merchant_id", 2, "2024-01-10")["merch_fraud_rate_7d"])


def test_merchant_output_types(merchant_frame: pd.DataFrame) -> None:
    stats = merchant_stats(merchant_frame, prior_weight=PRIOR)

    assert stats["merchant_id"].dtype == np.int64
    assert stats["merch_txn_count_7d"].dtype == np.int64
    assert str(stats["event_timestamp"].dt.tz) == "UTC"
    assert (stats["event_timestamp"] == stats["event_timestamp"].dt.floor("D")).all()
