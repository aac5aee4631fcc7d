"""Request-time features: stored features plus the transaction being scored become the model's input.

This is the one function used unchanged by training, batch scoring and the online service.

It works column-wise on anything that maps a column name to an array (a pandas DataFrame, or a dict of
NumPy arrays for a single online request), so the serving hot path needs no pandas.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import numpy as np

from mlops_recipes.contract import AMOUNT, EVENT_TIME, Contract
from mlops_recipes.views import feature_views, stored_model_inputs
from mlops_recipes.views import stored_features as stored_features  # re-exported: every caller's door

# The stored features are the feature views' (src/mlops_recipes/views/, one file each: names, types, whether a
# feature is a model input or only feeds derived ones, what it needs of the contract); a model reads those of its
# feature service (``service`` below; None: every view). ``STORED_FEATURES`` (every stored feature, when the data
# has every optional column, in view order) is computed on first use (module ``__getattr__``), so that importing
# this module imports no view: a broken view file fails where it is used, as a reported error.
# Derived features that mix the request with stored values: point in time as in training (the service updates
# customer rows per transaction), but compared with a training reference that starts cold (docs/monitoring.md,
# drift). Every other derived input depends on the request alone.
_STORED_DEPENDENT = {"amount_zscore", "amount_to_mean_ratio", "log_seconds_since_last_txn", "account_age_days"}


def encoded_columns(contract: Contract) -> dict[str, tuple[str, ...]]:
    """Categorical field → the model inputs that encode it (indicators: ``<field>_<value>`` but the first)."""
    return {
        name: tuple(f"{name}_{value}" for value in spec.values[1:]) if spec.encoding == "indicators" else (name,)
        for name, spec in contract.categorical.items()
    }


def category_features(contract: Contract) -> tuple[str, ...]:
    """Model inputs holding a category's position (encoded as categorical inside the model's Pipeline)."""
    return tuple(name for name, spec in contract.categorical.items() if spec.encoding == "category")


def derived_features(contract: Contract) -> tuple[str, ...]:
    """Model inputs computed here from the request (and stored values), in signature order."""
    names = [AMOUNT, "log_amount", "amount_zscore", "amount_to_mean_ratio", "log_seconds_since_last_txn"]
    if contract.has_account_created:
        names.append("account_age_days")
    names += ["hour_of_day", "is_night"]
    names += [column for columns in encoded_columns(contract).values() for column in columns]
    names += list(contract.numeric)
    return tuple(names)


def model_features(contract: Contract, service: str | None = None) -> tuple[str, ...]:
    """The input columns of a model trained on ``service`` (None: every view), in signature order."""
    return stored_model_inputs(contract, service) + derived_features(contract)


@functools.cache
def _every_stored_feature() -> tuple[str, ...]:
    return tuple(feature.name for view in feature_views() for feature in view.features)


def __getattr__(name: str) -> Any:
    if name == "STORED_FEATURES":
        return _every_stored_feature()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_request_only(name: str) -> bool:
    """Whether a model input depends on the request alone (directly comparable with training for drift)."""
    return name not in _every_stored_feature() and name not in _STORED_DEPENDENT


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


def unseen_values(columns: Columns, contract: Contract) -> dict[str, np.ndarray]:
    """Per categorical field, a mask of rows whose value is outside the declared domain."""
    out = {}
    for name, spec in contract.categorical.items():
        values = np.asarray(columns[name]).astype(str)
        out[name] = ~np.isin(values, spec.values)
    return out


def request_features(columns: Columns, contract: Contract, service: str | None = None) -> dict[str, np.ndarray]:
    """Model inputs (:func:`model_features` of ``service``) from its stored features and request fields.

    Missing stored features (a new customer, an unknown merchant) arrive as NaN and stay NaN where a derived
    feature depends on them; the default model handles missing values natively. A categorical value outside
    its domain is an error unless the field is declared ``open``: then it sets no indicator (or a missing
    category).
    """
    amount = _floats(columns, AMOUNT)
    now = event_seconds(columns[EVENT_TIME])
    mean = _floats(columns, "cust_amount_mean_30d")
    std = _floats(columns, "cust_amount_std_30d")
    last = _floats(columns, "cust_last_txn_ts")
    hour = np.floor(np.mod(now, 86_400.0) / 3600.0)

    with np.errstate(divide="ignore", invalid="ignore"):
        derived = {
            AMOUNT: amount,
            "log_amount": np.log1p(amount),
            "amount_zscore": (amount - mean) / np.maximum(std, 1.0),
            "amount_to_mean_ratio": amount / mean,
            "log_seconds_since_last_txn": np.log1p(np.maximum(now - last, 0.0)),
            "hour_of_day": hour,
            "is_night": ((hour < 6) | (hour >= 22)).astype(np.float64),
        }
        if contract.has_account_created:
            derived["account_age_days"] = (now - _floats(columns, "cust_account_created_ts")) / 86_400.0
    for name, spec in contract.categorical.items():
        values = np.asarray(columns[name]).astype(str)
        unknown = set(np.unique(values)) - set(spec.values)
        if unknown and not spec.open:
            raise ValueError(f"{name} must be one of {tuple(spec.values)}, got {sorted(unknown)}")
        if spec.encoding == "indicators":
            for value in spec.values[1:]:
                derived[f"{name}_{value}"] = (values == value).astype(np.float64)
        else:
            codes = {value: float(i) for i, value in enumerate(spec.values)}
            derived[name] = np.array([codes.get(v, np.nan) for v in values.tolist()], dtype=np.float64)
    for name in contract.numeric:
        derived[name] = _floats(columns, name)
    stored = {name: _floats(columns, name) for name in stored_model_inputs(contract, service)}
    merged = stored | derived
    return {name: merged[name] for name in model_features(contract, service)}
