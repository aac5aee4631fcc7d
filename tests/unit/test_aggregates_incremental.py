"""core/aggregates.py: the incremental ``customer_row`` equals the batch ``customer_stats`` on generated histories.

The online service computes a customer's row from their recent events after each transaction; training reads the
batch table. Hypothesis draws histories with bursts (gaps of zero or a few seconds), gaps landing exactly on the
window edges (1 h, 24 h, 7 d, 30 d), same-instant events and amounts of very different sizes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_recipes.core.aggregates import customer_row, customer_row_in_order, customer_stats, longest_window_us
from mlops_recipes.views.customer_stats import VIEW as CUSTOMER_VIEW

pytestmark = pytest.mark.unit

CUSTOMER_FEATURES = CUSTOMER_VIEW.names

_BASE_US = 1_700_000_000_000_000
_HOUR, _DAY = 3_600, 86_400
# Gaps in seconds: bursts, the window edges and one microsecond around them, and long silences.
_EDGE_GAPS = [0, 1, 2, 30, _HOUR - 1, _HOUR, _HOUR + 1, _DAY, 7 * _DAY, 30 * _DAY, 30 * _DAY + 1, 31 * _DAY]
_gap_us = st.one_of(
    st.sampled_from(_EDGE_GAPS).map(lambda s: s * 1_000_000),
    st.sampled_from([-1, 1]).map(lambda d: _HOUR * 1_000_000 + d),
    st.integers(0, 40 * _DAY).map(lambda s: s * 1_000_000),
    st.integers(0, 10_000_000),
)
_amount = st.one_of(
    st.decimals("0.50", "5000.00", places=2).map(float),
    st.sampled_from([10.0, 10.01, 9999.99]),
)


@st.composite
def histories(draw: st.DrawFn) -> pd.DataFrame:
    """Events of one to three customers, as the raw transaction table (µs timestamps, 2-decimal amounts)."""
    rows = []
    for customer in range(1, draw(st.integers(1, 3)) + 1):
        gaps = draw(st.lists(_gap_us, min_size=1, max_size=25))
        amounts = draw(st.lists(_amount, min_size=len(gaps), max_size=len(gaps)))
        times = _BASE_US + np.cumsum(gaps)
        rows += [
            {"customer_id": customer, "t": int(t), "amount": a, "created": _BASE_US - 86_400_000_000 * customer}
            for t, a in zip(times, amounts, strict=True)
        ]
    frame = pd.DataFrame(rows)
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype("int64"),
            "event_timestamp": pd.to_datetime(frame["t"], unit="us", utc=True).dt.as_unit("ns"),
            "amount": frame["amount"].astype("float64"),
            "account_created_at": pd.to_datetime(frame["created"], unit="us", utc=True).dt.as_unit("ns"),
        }
    )


def _us(values: pd.Series) -> np.ndarray:
    return values.dt.as_unit("us").astype("int64").to_numpy()


def _assert_rows_equal(batch: pd.Series, online: dict[str, float], amounts: np.ndarray) -> None:
    assert sorted(online) == sorted(CUSTOMER_FEATURES)  # the view's features, no more
    for name in CUSTOMER_FEATURES:
        expected, got = float(batch[name]), online[name]
        # Rolling sums and variances are updated as events enter and leave the window: their rounding error
        # scales with the largest amount seen, not with the result (a std of 0.005 after a 5,000 left).
        tolerance = 1e-9 * max(1.0, float(np.abs(amounts).max()))
        assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=tolerance), (name, got, expected)
        if name.startswith("cust_txn_count"):
            assert isinstance(got, int), (name, got)
            assert got == expected, (name, got, expected)


@settings(max_examples=150, deadline=None)
@given(histories())
def test_incremental_row_equals_the_batch_row_after_each_event(events: pd.DataFrame) -> None:
    batch = customer_stats(events)

    for row in batch.itertuples(index=False):
        mine = events[events["customer_id"] == row.customer_id]
        # What the online store holds by then: every event up to and including this instant, in arrival order
        # (shuffled: the log is a set), plus older ones that the windows must ignore.
        seen = mine[mine["event_timestamp"] <= row.event_timestamp].sample(frac=1.0, random_state=7)
        online = customer_row(
            _us(seen["event_timestamp"]),
            seen["amount"].to_numpy(),
            account_created_ts=float(seen["account_created_at"].iloc[0].timestamp()),
        )
        _assert_rows_equal(pd.Series(row._asdict()), online, seen["amount"].to_numpy())


@settings(max_examples=100, deadline=None)
@given(histories())
def test_history_beyond_the_longest_window_changes_nothing(events: pd.DataFrame) -> None:
    times, amounts = _us(events["event_timestamp"]), events["amount"].to_numpy()
    latest = times.max()
    recent = times > latest - longest_window_us()

    full = customer_row(times, amounts, account_created_ts=0.0)
    trimmed = customer_row(times[recent], amounts[recent], account_created_ts=0.0)

    assert full == trimmed


@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_a_row_depends_on_the_events_not_on_their_order(events: pd.DataFrame, shuffle: Any) -> None:
    times, amounts = _us(events["event_timestamp"]), events["amount"].to_numpy()
    order = list(range(len(times)))
    shuffle.shuffle(order)
    ordered = np.argsort(times, kind="stable")

    as_logged = customer_row_in_order(
        times[ordered].tolist(), amounts[ordered].tolist(), account_created_ts=0.0
    )  # the event log's form

    assert customer_row(times[order], amounts[order], account_created_ts=0.0) == as_logged  # exactly: fsum


def test_window_edges_are_open_on_the_left() -> None:
    hour = 3_600_000_000
    times = np.array([0, 1, hour, hour + 1]) + _BASE_US

    row = customer_row(times, np.array([1.0, 2.0, 4.0, 8.0]), account_created_ts=5.0)

    # (t - 1 h, t] with t = hour + 1 µs: the event at 1 µs is exactly 1 h old and out; the one at 0 too.
    assert (row["cust_txn_count_1h"], row["cust_amount_sum_1h"]) == (2, 12.0)
    assert row["cust_txn_count_24h"] == 4
    assert row["cust_amount_mean_30d"] == pytest.approx(3.75)
    assert row["cust_amount_std_30d"] == pytest.approx(float(np.std([1.0, 2.0, 4.0, 8.0])))
    assert row["cust_last_txn_ts"] == (_BASE_US + hour + 1) / 1e6
    assert row["cust_account_created_ts"] == 5.0


def test_no_events_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        customer_row(np.array([], dtype=np.int64), np.array([]), account_created_ts=0.0)
