"""dataset: the point-in-time training set through the feature service, split by time.

The rows are the offline face of :mod:`mlops_recipes.model_inputs`, the builder batch scoring and the service use.
"""

from __future__ import annotations

from typing import Any

from mlops_recipes.contract import EVENT_TIME, LABEL
from mlops_recipes.core.request_features import model_features
from mlops_recipes.core.split import time_split
from mlops_recipes.io import feature_store
from mlops_recipes.io.files import read_parquet, write_json, write_parquet
from mlops_recipes.model_inputs import training_rows
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings
from mlops_recipes.views import service_views


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Write ``data/dataset/{train,holdout}.parquet``."""
    service = params.features.service
    service_views(service)  # a service no view declares fails here, naming the declared ones
    transactions = read_parquet(settings.validated_transactions)
    store = feature_store.open_store(settings)
    contract = settings.contract()
    frame = training_rows(store, transactions, service, contract)
    train, holdout = time_split(frame, holdout_days=params.split.holdout_days, gap_hours=params.split.gap_hours)
    write_parquet(train, settings.dataset_dir / "train.parquet")
    write_parquet(holdout, settings.dataset_dir / "holdout.parquet")
    summary = {
        "stage": "dataset",
        "feature_service": service,
        "rows": {"train": len(train), "holdout": len(holdout)},
        "fraud_rate": {"train": float(train[LABEL].mean()), "holdout": float(holdout[LABEL].mean())},
        "holdout_start": holdout[EVENT_TIME].min().isoformat(),
        "missing_share": {
            c: round(float(frame[c].isna().mean()), 4)
            for c in model_features(contract, service)
            if frame[c].isna().any()
        },
    }
    write_json(summary, settings.path(settings.reports_dir) / "dataset.json")
    return summary
