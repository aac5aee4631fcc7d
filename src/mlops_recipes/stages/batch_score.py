"""Batch scoring (the offline deployment path): score a file or a time window with the champion.

Features come from the same feature service and the same request-time transformation as online serving,
joined as of just before each transaction (so a backfill never sees the future); the model is called the
way the service calls it. Predictions are written to Parquet with the model version.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_recipes.io import feature_store
from mlops_recipes.io.files import read_parquet, read_table, write_parquet
from mlops_recipes.io.models import load_alias
from mlops_recipes.settings import Settings
from mlops_recipes.stages.dataset import model_inputs_as_of

REQUIRED_COLUMNS = ("transaction_id", "customer_id", "merchant_id", "event_timestamp", "amount", "channel")


class BatchInputError(ValueError):
    """The transactions to score are missing columns or empty."""


def select_transactions(
    settings: Settings, *, source: Path | None, start: dt.datetime | None, end: dt.datetime | None
) -> pd.DataFrame:
    """The transactions of ``source`` (Parquet/CSV) or of the validated data, within ``[start, end)``."""
    frame = read_table(source) if source is not None else read_parquet(settings.validated_transactions)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BatchInputError(f"transactions to score lack columns {missing} (need {list(REQUIRED_COLUMNS)})")
    if frame["event_timestamp"].isna().any():
        raise BatchInputError("transactions to score have missing or unparseable event_timestamp values")
    if start is not None:
        frame = frame.loc[frame["event_timestamp"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame.loc[frame["event_timestamp"] < pd.Timestamp(end)]
    if frame.empty:
        raise BatchInputError("no transactions to score in the given source and window")
    return frame.reset_index(drop=True)


def run(
    settings: Settings,
    *,
    output: Path,
    source: Path | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    threshold: float = 0.5,
    alias: str = "champion",
) -> dict[str, Any]:
    """Score and write ``output``; return a summary."""
    transactions = select_transactions(settings, source=source, start=start, end=end)
    model = load_alias(settings, alias)
    store = feature_store.open_store(settings)
    inputs = model_inputs_as_of(store, transactions, model.feature_service)
    probabilities = model.predict(inputs[list(model.features)].to_numpy(dtype="float64"))
    predictions = inputs[["transaction_id", "customer_id", "merchant_id", "event_timestamp"]].assign(
        fraud_probability=probabilities,
        is_fraud=probabilities >= threshold,
        model_name=model.name,
        model_version=model.version,
        scored_at=pd.Timestamp.now(tz="UTC"),
    )
    write_parquet(predictions, output)
    return {
        "stage": "batch_score",
        "rows": len(predictions),
        "flagged": int(predictions["is_fraud"].sum()),
        "model_version": model.version,
        "output": str(output),
    }
