"""dataset: the point-in-time training set through the feature service, split by time."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlops_recipes.contract import CUSTOMER, EVENT_TIME, LABEL, MERCHANT, TRANSACTION_ID, Contract
from mlops_recipes.core.request_features import model_features, request_features
from mlops_recipes.core.split import time_split
from mlops_recipes.io import feature_store
from mlops_recipes.io.files import read_parquet, write_json, write_parquet
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings

ID_COLUMNS = (TRANSACTION_ID, CUSTOMER, MERCHANT, EVENT_TIME)
# Features are looked up as of just before each transaction: the state the online store holds when the
# transaction arrives, never a row that already includes it (or anything later).
LOOKUP_OFFSET = pd.Timedelta(microseconds=1)


def model_inputs_as_of(
    store: Any,
    transactions: pd.DataFrame,
    service: str,
    contract: Contract,
    *,
    extra_columns: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Stored features joined point in time, then the request-time features: one row per transaction.

    Used for training (with the label as an extra column) and for batch scoring.
    """
    entity_columns = [TRANSACTION_ID, CUSTOMER, MERCHANT, *contract.request_fields]
    entity_df = transactions[[*entity_columns, *extra_columns]]
    entity_df = entity_df.assign(**{EVENT_TIME: entity_df[EVENT_TIME] - LOOKUP_OFFSET})
    joined = feature_store.historical_features(store, entity_df, service)
    joined = joined.assign(**{EVENT_TIME: joined[EVENT_TIME] + LOOKUP_OFFSET})
    joined = joined.sort_values(TRANSACTION_ID, kind="stable").reset_index(drop=True)
    model_inputs = pd.DataFrame(request_features(joined, contract), index=joined.index)
    return pd.concat([joined[list(ID_COLUMNS)], model_inputs, joined[list(extra_columns)]], axis=1)


def build_training_frame(store: Any, transactions: pd.DataFrame, service: str, contract: Contract) -> pd.DataFrame:
    """The labelled training frame: model inputs as of just before each transaction, plus the label."""
    frame = model_inputs_as_of(store, transactions, service, contract, extra_columns=(LABEL,))
    return frame.assign(**{LABEL: frame[LABEL].astype("int64")})


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Write ``data/dataset/{train,holdout}.parquet``."""
    transactions = read_parquet(settings.validated_transactions)
    store = feature_store.open_store(settings)
    contract = settings.contract()
    frame = build_training_frame(store, transactions, params.features.service, contract)
    train, holdout = time_split(frame, holdout_days=params.split.holdout_days, gap_hours=params.split.gap_hours)
    write_parquet(train, settings.dataset_dir / "train.parquet")
    write_parquet(holdout, settings.dataset_dir / "holdout.parquet")
    summary = {
        "stage": "dataset",
        "feature_service": params.features.service,
        "rows": {"train": len(train), "holdout": len(holdout)},
        "fraud_rate": {"train": float(train[LABEL].mean()), "holdout": float(holdout[LABEL].mean())},
        "holdout_start": holdout[EVENT_TIME].min().isoformat(),
        "missing_share": {
            c: round(float(frame[c].isna().mean()), 4) for c in model_features(contract) if frame[c].isna().any()
        },
    }
    write_json(summary, settings.path(settings.reports_dir) / "dataset.json")
    return summary
