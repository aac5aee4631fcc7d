"""core/request_features.py: the one transformation shared by training, batch scoring and serving."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_recipes.contract import Contract, demo_contract
from mlops_recipes.core.generator import CHANNELS
from mlops_recipes.core.request_features import (
    STORED_FEATURES,
    event_seconds,
    model_features,
)
from mlops_recipes.core.request_features import request_features as _request_features

pytestmark = pytest.mark.unit

# These cases are worked out on the demo contract (the generator's columns and channel values).
DEMO = demo_contract()
MODEL_FEATURES = model_features(DEMO)


def request_features(columns: Any, contract: Contract = DEMO) -> dict[str, np.ndarray]:
    return _request_features(columns, contract)


DAY = 86_400.0


def _epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC).timestamp()


# Three transactions; every expected value below is worked out by hand from these numbers.
NOW = ["2024-01-02 23:30:00", "2024-01-03 06:00:00", "2024-01-03 21:59:59"]
ROWS: dict[str, list[Any]] = {
    "amount": [150.0, 100.0, 20.0],
    "channel": ["online", "atm", "pos"],
    "cust_amount_mean_30d": [50.0, 80.0, 40.0],
    "cust_amount_std_30d": [0.5, 10.0, 20.0],
    # 1 h before; 60 s *after* (clock skew); one day before.
    "cust_last_txn_ts": [_epoch(NOW[0]) - 3600, _epoch(NOW[1]) + 60, _epoch(NOW[2]) - DAY],
    "cust_account_created_ts": [
        _epoch("2023-12-02 23:30:00"),
        _epoch("2024-01-03 00:00:00"),
        _epoch(NOW[2]) - 10 * DAY,
    ],
    "cust_txn_count_1h": [1, 0, 2],
    "cust_txn_count_24h": [3, 1, 4],
    "cust_txn_count_7d": [9, 5, 6],
    "cust_amount_sum_1h": [150.0, 0.0, 45.0],
    "cust_amount_sum_24h": [300.0, 80.0, 90.0],
    "cust_amount_sum_7d": [700.0, 400.0, 230.0],
    "merch_txn_count_7d": [12, 0, 300],
    "merch_fraud_rate_7d": [0.2, 0.01, 0.001],
    "merch_amount_mean_7d": [80.0, math.nan, 25.0],
}
EXPECTED = {
    "amount": [150.0, 100.0, 20.0],
    "log_amount": [math.log(151.0), math.log(101.0), math.log(21.0)],
    "amount_zscore": [100.0, 2.0, -1.0],  # std 0.5 is floored at 1
    "amount_to_mean_ratio": [3.0, 1.25, 0.5],
    "log_seconds_since_last_txn": [math.log(3601.0), 0.0, math.log(DAY + 1)],
    "account_age_days": [31.0, 0.25, 10.0],
    "hour_of_day": [23.0, 6.0, 21.0],
    "is_night": [1.0, 0.0, 0.0],
    "channel_online": [1.0, 0.0, 0.0],
    "channel_atm": [0.0, 1.0, 0.0],
}


def _frame() -> pd.DataFrame:
    frame = pd.DataFrame(ROWS)
    frame["event_timestamp"] = pd.to_datetime(NOW, utc=True)
    return frame


def _arrays(timestamps: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in ROWS.items()} | {"event_timestamp": timestamps}


def _one(event_timestamp: str, **overrides: Any) -> dict[str, np.ndarray]:
    """A single request as a dict of one-element arrays, with neutral stored features."""
    row: dict[str, Any] = {name: 1.0 for name in STORED_FEATURES}
    row |= {"amount": 10.0, "channel": "pos", "event_timestamp": np.datetime64(event_timestamp, "ns")}
    row |= overrides
    return {name: np.asarray([value]) for name, value in row.items()}


def test_output_keys_are_the_model_features_in_order() -> None:
    out = request_features(_frame())

    assert list(out) == list(MODEL_FEATURES)
    assert all(len(values) == 3 for values in out.values())


def test_absolute_times_are_not_model_features() -> None:
    assert "cust_last_txn_ts" not in MODEL_FEATURES
    assert "cust_account_created_ts" not in MODEL_FEATURES
    assert len(set(MODEL_FEATURES)) == len(MODEL_FEATURES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_derived_values(name: str) -> None:
    out = request_features(_frame())

    np.testing.assert_allclose(out[name], EXPECTED[name], rtol=1e-12)


def test_stored_features_pass_through_unchanged() -> None:
    out = request_features(_frame())

    for name in MODEL_FEATURES:
        if name in ROWS and name not in EXPECTED:
            np.testing.assert_array_equal(out[name], np.asarray(ROWS[name], dtype=np.float64), err_msg=name)


def test_outputs_are_float64() -> None:
    out = request_features(_frame())

    assert all(values.dtype == np.float64 for values in out.values())


@pytest.mark.parametrize(
    "timestamps",
    [
        pytest.param(np.array(NOW, dtype="datetime64[ns]"), id="datetime64"),
        pytest.param(np.array([_epoch(t) for t in NOW]), id="epoch-floats"),
    ],
)
def test_dict_of_arrays_gives_the_same_numbers_as_a_dataframe(timestamps: np.ndarray) -> None:
    from_frame = request_features(_frame())
    from_arrays = request_features(_arrays(timestamps))

    assert list(from_arrays) == list(from_frame)
    for name in MODEL_FEATURES:
        np.testing.assert_array_equal(from_arrays[name], from_frame[name], err_msg=name)


@pytest.mark.parametrize(
    ("clock", "hour", "night"),
    [
        ("2024-01-03T21:59:59", 21.0, 0.0),
        ("2024-01-03T22:00:00", 22.0, 1.0),
        ("2024-01-03T00:00:00", 0.0, 1.0),
        ("2024-01-03T05:59:59", 5.0, 1.0),
        ("2024-01-03T06:00:00", 6.0, 0.0),
        ("2024-01-03T12:00:00", 12.0, 0.0),
    ],
)
def test_hour_and_night_boundaries(clock: str, hour: float, night: float) -> None:
    out = request_features(_one(clock))

    assert out["hour_of_day"][0] == hour
    assert out["is_night"][0] == night


def test_hour_of_day_is_utc_whatever_the_input_zone() -> None:
    # 00:30 in Paris (UTC+1 in winter) is 23:30 UTC.
    frame = _frame().iloc[:1].copy()
    frame["event_timestamp"] = pd.Series(pd.to_datetime(["2024-01-03 00:30"]).tz_localize("Europe/Paris"))

    out = request_features(frame)

    assert out["hour_of_day"][0] == 23.0
    assert out["is_night"][0] == 1.0


@pytest.mark.parametrize(("channel", "online", "atm"), [("pos", 0.0, 0.0), ("online", 1.0, 0.0), ("atm", 0.0, 1.0)])
def test_channel_one_hots(channel: str, online: float, atm: float) -> None:
    out = request_features(_one("2024-01-03T12:00:00", channel=channel))

    assert (out["channel_online"][0], out["channel_atm"][0]) == (online, atm)


def test_every_known_channel_is_accepted() -> None:
    columns = _one("2024-01-03T12:00:00")
    columns = {name: np.repeat(values, len(CHANNELS)) for name, values in columns.items()}
    columns["channel"] = np.asarray(CHANNELS)

    out = request_features(columns)

    assert out["channel_online"].sum() == 1.0
    assert out["channel_atm"].sum() == 1.0


@pytest.mark.parametrize("bad", ["phone", "ONLINE", ""])
def test_unknown_channel_raises(bad: str) -> None:
    with pytest.raises(ValueError, match="channel"):
        request_features(_one("2024-01-03T12:00:00", channel=bad))


def test_missing_stored_features_stay_missing() -> None:
    nan = math.nan
    out = request_features(
        _one(
            "2024-01-03T12:00:00",
            cust_amount_mean_30d=nan,
            cust_amount_std_30d=nan,
            cust_last_txn_ts=nan,
            cust_account_created_ts=nan,
            merch_fraud_rate_7d=nan,
        )
    )

    for name in ("amount_zscore", "amount_to_mean_ratio", "log_seconds_since_last_txn", "account_age_days"):
        assert math.isnan(out[name][0]), name
    assert math.isnan(out["merch_fraud_rate_7d"][0])
    # Request-only features are still computed.
    for name in ("amount", "log_amount", "hour_of_day", "is_night", "channel_online", "channel_atm"):
        assert not math.isnan(out[name][0]), name


def test_missing_std_alone_makes_the_zscore_missing_not_floored() -> None:
    out = request_features(_one("2024-01-03T12:00:00", cust_amount_mean_30d=5.0, cust_amount_std_30d=math.nan))

    assert math.isnan(out["amount_zscore"][0])
    assert out["amount_to_mean_ratio"][0] == pytest.approx(2.0)


# ---------------------------------------------------------------- event_seconds

EPOCHS = [_epoch("2024-01-02 23:30:00"), _epoch("1970-01-01 00:00:01"), _epoch("2030-06-15 12:00:00.5")]
ISO = ["2024-01-02 23:30:00.000", "1970-01-01 00:00:01.000", "2030-06-15 12:00:00.500"]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(pd.Series(pd.to_datetime(ISO, utc=True)), id="tz-aware-utc-series"),
        pytest.param(pd.Series(pd.to_datetime(ISO, utc=True)).dt.tz_convert("America/New_York"), id="tz-aware-ny"),
        pytest.param(pd.Series(pd.to_datetime(ISO, utc=True).as_unit("us")), id="tz-aware-us-unit"),
        pytest.param(pd.to_datetime(ISO, utc=True), id="tz-aware-index"),
        pytest.param(np.array(ISO, dtype="datetime64[ns]"), id="datetime64-ns"),
        pytest.param(np.array(ISO, dtype="datetime64[ms]"), id="datetime64-ms"),
        pytest.param(np.array(EPOCHS), id="epoch-floats"),
        pytest.param(list(EPOCHS), id="epoch-list"),
    ],
)
def test_event_seconds(values: Any) -> None:
    seconds = event_seconds(values)

    assert seconds.dtype == np.float64
    np.testing.assert_allclose(seconds, EPOCHS, rtol=0, atol=1e-6)


def test_event_seconds_of_integer_epochs() -> None:
    np.testing.assert_array_equal(event_seconds(np.array([0, 86_400])), [0.0, 86_400.0])
