"""Tiny frames shared by the unit tests.

Tests are collected with ``--import-mode=importlib``, so test modules cannot import this file: the builders
are handed out as fixtures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import pytest

from mlops_recipes.core.generator import TRANSACTION_COLUMNS, generate_transactions
from mlops_recipes.params import DataParams

_DEFAULTS: dict[str, Any] = {
    "customer_id": 1,
    "merchant_id": 1,
    "amount": 10.0,
    "channel": "pos",
    "account_created_at": "2023-01-01 00:00:00",
    "is_fraud": 0,
}


def _transactions(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    records = [_DEFAULTS | dict(row) for row in rows]
    frame = pd.DataFrame.from_records(records)
    frame.insert(0, "transaction_id", range(1, len(frame) + 1))
    for column in ("event_timestamp", "account_created_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601").dt.as_unit("ns")
    for column in ("transaction_id", "customer_id", "merchant_id", "is_fraud"):
        frame[column] = frame[column].astype("int64")
    frame["amount"] = frame["amount"].astype("float64")
    return frame[list(TRANSACTION_COLUMNS)]


@pytest.fixture(scope="session")
def make_transactions() -> Callable[[Iterable[Mapping[str, Any]]], pd.DataFrame]:
    """Build a transaction frame in the demo contract's columns and dtypes from rows that each give at least
    ``event_timestamp``; other columns default to customer 1, merchant 1, 10.0, 'pos', legit."""
    return _transactions


@pytest.fixture(scope="session")
def small_generated() -> pd.DataFrame:
    """A small generated transaction table (a few thousand rows, fixed seed and end date); copy before mutating."""
    return generate_transactions(DataParams(n_customers=300, days=20), today=dt.date(2024, 3, 1))
