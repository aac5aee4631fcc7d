"""features: compute the feature tables, apply the Feast definitions and load the online store.

One table per feature view declared in :mod:`mlops_recipes.views` (one file each), checked against its spec.
Batch-only views (merchant stats) are materialized by Feast. The per-transaction customer view is loaded through
the customer event log (:mod:`mlops_recipes.io.customer_events`), the path the service updates after every
transaction: the rows it writes are the batch rows (same definition), and events scored online after the data's
end are kept, so rerunning the stage never takes a customer's row back in time.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops_recipes import views
from mlops_recipes.contract import CUSTOMER, EVENT_TIME
from mlops_recipes.io import feature_store
from mlops_recipes.io.customer_events import CustomerUpdates
from mlops_recipes.io.files import read_parquet, write_json, write_parquet
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Write ``data/features/*.parquet``, register them in Feast and load the latest rows online."""
    views.service_views(params.features.service)  # a service no view declares fails before any work
    transactions = read_parquet(settings.validated_transactions)
    contract = settings.contract()
    tables = {
        view.name: views.compute_table(view, transactions, params.features, contract) for view in views.feature_views()
    }
    for name, table in tables.items():
        write_parquet(table, settings.feature_tables_dir / f"{name}.parquet")

    store = feature_store.open_store(settings)
    definitions = feature_store.load_definitions(settings.feature_repo_path)
    applied = feature_store.apply_definitions(store, definitions, users=lambda: _services_in_use(settings))
    start = min(t[EVENT_TIME].min() for t in tables.values()).to_pydatetime()
    end = max(t[EVENT_TIME].max() for t in tables.values()).to_pydatetime() + dt.timedelta(seconds=1)
    materialized = feature_store.materialize_batch_views(store, start=start, end=end)
    customers = CustomerUpdates(store).rebuild(transactions)
    online_check = _check_online(store, tables, params.features.service)

    summary = {
        "stage": "features",
        "tables": {name: len(table) for name, table in tables.items()},
        "feature_service": params.features.service,
        "materialized": {"start": start.isoformat(), "end": end.isoformat(), "views": materialized},
        "customer_event_log": customers,
        "online_check": online_check,
        **applied,
    }
    write_json(summary, settings.path(settings.reports_dir) / "features.json")
    return summary


def _services_in_use(settings: Settings) -> dict[str, list[str]]:
    """Who uses which feature service in the model registry (asked only when definitions change a service)."""
    from mlops_recipes.io import registry, tracking

    try:
        return registry.services_in_use(tracking.client(settings), settings.model_name)
    except Exception as error:
        # Unknown is not "unused": refuse rather than change a service the champion may read.
        raise feature_store.FeatureServiceInUse(
            "the feature definitions change a registered feature service, and the model registry cannot say "
            f"whether a model uses it: {type(error).__name__}: {error}"
        ) from error


def _check_online(store: FeatureStore, tables: dict[str, pd.DataFrame], service: str) -> dict[str, Any]:
    """Read back the latest customer row: materialization that silently loaded nothing fails here.

    The online row may be newer than the data (transactions the service scored since the data ends are kept):
    only a missing or older row fails.
    """
    latest = tables["customer_stats"].sort_values(EVENT_TIME).iloc[-1]
    customer_id = _native(latest[CUSTOMER])  # keys keep the contract's type (int or string)
    # A key of every other entity the service's views are keyed by (any one: only the customer row is checked).
    others = {view.join_key: _native(tables[view.name][view.join_key].iloc[0]) for view in views.service_views(service)}
    values = feature_store.online_features(store, [others | {CUSTOMER: customer_id}], service)
    got = values.get("cust_last_txn_ts", [None])[0]
    expected = float(latest["cust_last_txn_ts"])
    if got is None or (isinstance(got, float) and math.isnan(got)) or float(got) < expected - 1e-3:
        raise feature_store.FeatureStoreError(
            f"online store check failed: customer {customer_id} has cust_last_txn_ts={got!r} online, "
            f"expected {expected} or later after materialization"
        )
    return {CUSTOMER: customer_id, "cust_last_txn_ts": expected}


def _native(value: Any) -> Any:
    """A NumPy scalar as the plain Python value Feast's online lookup expects."""
    return value.item() if hasattr(value, "item") else value
