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

from mlops_recipes.contract import EVENT_TIME, LABEL, Contract
from mlops_recipes.core.conform import ContractMismatchError, conform
from mlops_recipes.errors import ReportedError
from mlops_recipes.io import feature_store
from mlops_recipes.io.files import read_parquet, read_table, write_parquet
from mlops_recipes.io.models import load_alias
from mlops_recipes.io.registry import CHAMPION
from mlops_recipes.model_inputs import ID_COLUMNS, offline_rows
from mlops_recipes.settings import Settings


class BatchInputError(ReportedError, ValueError):
    """The transactions to score are missing columns or empty."""


def select_transactions(
    settings: Settings,
    contract: Contract,
    *,
    source: Path | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> pd.DataFrame:
    """The transactions of ``source`` or of the validated data, within ``[start, end)``.

    ``source`` is a Parquet/CSV file in the contract's shape; its label column is optional.
    """
    if source is None:
        frame = read_parquet(settings.validated_transactions)
    else:
        try:
            frame, _ = conform(read_table(source), contract, with_label=False)
        except ContractMismatchError as error:
            raise BatchInputError(f"transactions to score: {error}") from None
    if frame[EVENT_TIME].isna().any():
        key = contract.key_of(EVENT_TIME)
        raise BatchInputError(f"transactions to score have missing or unparseable times ({key} in the contract)")
    if start is not None:
        frame = frame.loc[frame[EVENT_TIME] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame.loc[frame[EVENT_TIME] < pd.Timestamp(end)]
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
    alias: str = CHAMPION,
) -> dict[str, Any]:
    """Score and write ``output``; return a summary. Decisions are at the version's recorded threshold."""
    contract = settings.contract()
    transactions = select_transactions(settings, contract, source=source, start=start, end=end)
    model = load_alias(settings, alias)
    store = feature_store.open_store(settings)
    inputs = offline_rows(store, transactions, model.feature_service, contract)
    probabilities = model.score_frame(inputs)
    predictions = inputs[list(ID_COLUMNS)].assign(
        fraud_probability=probabilities,
        **{LABEL: probabilities >= model.threshold},
        model_name=model.name,
        model_version=model.version,
        scored_at=pd.Timestamp.now(tz="UTC"),
    )
    write_parquet(predictions, output)
    return {
        "stage": "batch_score",
        "rows": len(predictions),
        "flagged": int(predictions[LABEL].sum()),
        "model_version": model.version,
        "threshold": model.threshold,
        "output": str(output),
    }
