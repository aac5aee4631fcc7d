"""The model's input rows, built one way with two faces: offline (training, batch scoring) and online (the service).

Both faces feed the same stored features (point in time offline, the online store's latest row online) and the
same request fields through the one request-time transformation
(:func:`mlops_recipes.core.request_features.request_features`), next to the data contract that names the columns:

* :func:`offline_rows` joins the feature service as of just before each transaction (the dataset stage with the
  label as an extra column, batch scoring, the replay parity check);
* :func:`online_matrix` assembles the rows of a request from the online lookup and the request's fields.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_recipes.contract import AMOUNT, CUSTOMER, EVENT_TIME, LABEL, MERCHANT, TRANSACTION_ID, Contract
from mlops_recipes.core.request_features import request_features, stored_features

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

ID_COLUMNS = (TRANSACTION_ID, CUSTOMER, MERCHANT, EVENT_TIME)
# Features are looked up as of just before each transaction: the state the online store holds when the
# transaction arrives, never a row that already includes it (or anything later).
LOOKUP_OFFSET_US = 1


def offline_rows(
    store: FeatureStore,
    transactions: pd.DataFrame,
    service: str,
    contract: Contract,
    *,
    extra_columns: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Stored features joined point in time, then the request-time features: one row per transaction."""
    import pandas as pd

    from mlops_recipes.io import feature_store

    offset = pd.Timedelta(microseconds=LOOKUP_OFFSET_US)
    entity_columns = [TRANSACTION_ID, CUSTOMER, MERCHANT, *contract.request_fields]
    entity_df = transactions[[*entity_columns, *extra_columns]]
    entity_df = entity_df.assign(**{EVENT_TIME: entity_df[EVENT_TIME] - offset})
    joined = feature_store.historical_features(store, entity_df, service)
    joined = joined.assign(**{EVENT_TIME: joined[EVENT_TIME] + offset})
    joined = joined.sort_values(TRANSACTION_ID, kind="stable").reset_index(drop=True)
    model_inputs = pd.DataFrame(request_features(joined, contract, service), index=joined.index)
    return pd.concat([joined[list(ID_COLUMNS)], model_inputs, joined[list(extra_columns)]], axis=1)


def training_rows(store: FeatureStore, transactions: pd.DataFrame, service: str, contract: Contract) -> pd.DataFrame:
    """The labelled training frame: model inputs as of just before each transaction, plus the contract's label."""
    frame = offline_rows(store, transactions, service, contract, extra_columns=(LABEL,))
    return frame.assign(**{LABEL: frame[LABEL].astype("int64")})


def _as_float_column(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _epoch(value: dt.datetime) -> float:
    if value.tzinfo is None:  # naive timestamps are UTC, as everywhere in the pipeline
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def online_matrix(
    stored: Mapping[str, Sequence[Any]],
    requests: Sequence[object],
    features: Sequence[str],
    contract: Contract,
    *,
    now: float,
    service: str | None = None,
) -> np.ndarray:
    """The model's input rows for requests: the online lookup's ``stored`` columns and each request's fields.

    A request is any object with the contract's request fields as attributes (the service's ``Transaction``);
    one without an ``event_timestamp`` happens ``now``. ``stored`` holds the features of ``service``, the model's
    feature service (None: every view's). Columns come out in ``features`` order (the signature's).
    """
    columns: dict[str, Any] = {name: _as_float_column(stored[name]) for name in stored_features(contract, service)}
    columns[AMOUNT] = np.array([getattr(r, AMOUNT) for r in requests], dtype=np.float64)
    for name in contract.categorical:
        columns[name] = np.array([getattr(r, name) for r in requests])
    for name in contract.numeric:
        columns[name] = _as_float_column([getattr(r, name) for r in requests])
    times = [getattr(r, EVENT_TIME) for r in requests]
    columns[EVENT_TIME] = np.array([now if t is None else _epoch(t) for t in times], dtype=np.float64)
    inputs = request_features(columns, contract, service)
    return np.column_stack([inputs[name] for name in features])
