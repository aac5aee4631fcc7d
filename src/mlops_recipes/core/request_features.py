"""Request-time features: stored features plus the transaction being scored become the model's input.

This is the one function used unchanged by training, batch scoring and the online service.

It works column-wise on anything that maps a column name to an array (a pandas DataFrame, or a dict of
NumPy arrays for a single online request), so the serving hot path needs no pandas.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from mlops_recipes.core.aggregates import CUSTOMER_FEATURES, MERCHANT_FEATURES

CHANNELS = ("pos", "online", "atm")
# Fields that arrive with the request (or the raw event at training time), not from the feature store.
REQUEST_FIELDS = ("amount", "channel", "event_timestamp")
STORED_FEATURES = CUSTOMER_FEATURES + MERCHANT_FEATURES
# Stored features that are only inputs to derived ones (absolute times mean nothing to a model).
_STORED_ONLY = {"cust_last_txn_ts", "cust_account_created_ts"}
DERIVED_FEATURES = (
    "amount",
    "log_amount",
    "amount_zscore",
    "amount_to_mean_ratio",
    "log_seconds_since_last_txn",
    "account_age_days",
    "hour_of_day",
    "is_night",
    "channel_online",
    "channel_atm",
)
# Derived features that depend on the request alone, not on stored features: their live distribution is directly
# comparable with training. The others mix in online values, which are snapshots as of the last materialization
# rather than as of each event (see docs/monitoring.md, drift).
REQUEST_ONLY_FEATURES = ("amount", "log_amount", "hour_of_day", "is_night", "channel_online", "channel_atm")
# The model's input columns, in signature order.
MODEL_FEATURES = tuple(f for f in STORED_FEATURES if f not in _STORED_ONLY) + DERIVED_FEATURES


class Columns(Protocol):
    """Anything indexable by column name: a pandas DataFrame or a dict of arrays."""

    def __getitem__(self, key: str, /) -> Any: ...


def _floats(columns: Columns, name: str) -> np.ndarray:
    return np.asarray(columns[name], dtype=np.float64)


def event_seconds(values: Any) -> np.ndarray:
    """Epoch seconds of timestamps (tz-aware pandas values, ``datetime64`` arrays, or epoch floats)."""
    array = np.asarray(values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").astype(np.int64) / 1e9
    if array.dtype == object:  # tz-aware pandas Timestamps
        return np.array([value.timestamp() for value in array], dtype=np.float64)
    return array.astype(np.float64)


def request_features(columns: Columns) -> dict[str, np.ndarray]:
    """Model inputs (``MODEL_FEATURES``) from stored features and request fields.

    Missing stored features (a new customer, an unknown merchant) arrive as NaN and stay NaN where a derived
    feature depends on them; the default model handles missing values natively.
    """
    amount = _floats(columns, "amount")
    now = event_seconds(columns["event_timestamp"])
    mean = _floats(columns, "cust_amount_mean_30d")
    std = _floats(columns, "cust_amount_std_30d")
    last = _floats(columns, "cust_last_txn_ts")
    created = _floats(columns, "cust_account_created_ts")
    channel = np.asarray(columns["channel"]).astype(str)
    unknown = set(np.unique(channel)) - set(CHANNELS)
    if unknown:
        raise ValueError(f"channel must be one of {CHANNELS}, got {sorted(unknown)}")
    hour = np.floor(np.mod(now, 86_400.0) / 3600.0)

    with np.errstate(divide="ignore", invalid="ignore"):
        derived = {
            "amount": amount,
            "log_amount": np.log1p(amount),
            "amount_zscore": (amount - mean) / np.maximum(std, 1.0),
            "amount_to_mean_ratio": amount / mean,
            "log_seconds_since_last_txn": np.log1p(np.maximum(now - last, 0.0)),
            "account_age_days": (now - created) / 86_400.0,
            "hour_of_day": hour,
            "is_night": ((hour < 6) | (hour >= 22)).astype(np.float64),
            "channel_online": (channel == "online").astype(np.float64),
            "channel_atm": (channel == "atm").astype(np.float64),
        }
    stored = {name: _floats(columns, name) for name in STORED_FEATURES if name not in _STORED_ONLY}
    merged = stored | derived
    return {name: merged[name] for name in MODEL_FEATURES}
