"""Incremental materialization: push feature rows newer than the last run into the online store.

Only batch-only views: the per-transaction customer view is kept current by the service itself (and rebuilt by
the features stage through the customer event log); a batch row would overwrite a fresher pushed one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.parquet as pq

from mlops_recipes.contract import EVENT_TIME
from mlops_recipes.io import feature_store, pipeline
from mlops_recipes.settings import Settings


def run(settings: Settings, *, end: dt.datetime | None = None, lock_wait_s: float = 60.0) -> dict[str, Any]:
    """Materialize up to ``end`` (default now) and report how fresh each view is online afterwards.

    Never while the pipeline runs (its features stage rewrites the tables and materializes them itself): after
    waiting ``lock_wait_s`` for the pipeline lock it skips, saying so in the summary.
    """
    end = end or dt.datetime.now(dt.UTC)
    try:
        with pipeline.exclusive(settings, holder="materialize", wait_s=lock_wait_s):
            store = feature_store.open_store(settings)
            feature_store.materialize_incremental(store, end=end)
    except pipeline.PipelineBusy as busy:
        return {"stage": "materialize", "end": end.isoformat(), "skipped": str(busy), "freshness": {}}
    freshness: dict[str, Any] = {}
    for view, path in feature_store.batch_sources(store).items():
        latest = _latest_timestamp(path) if path is not None else None
        freshness[view] = {
            "latest_feature_timestamp": latest.isoformat() if latest else None,
            "lag_seconds": (end - latest).total_seconds() if latest else None,
        }
    return {"stage": "materialize", "end": end.isoformat(), "freshness": freshness}


def _latest_timestamp(path: str) -> dt.datetime | None:
    """The newest event timestamp in a feature table (reads that one column only)."""
    try:
        table = pq.read_table(path, columns=[EVENT_TIME])
    except FileNotFoundError:
        return None
    if table.num_rows == 0:
        return None
    latest: dt.datetime = max(table.column(EVENT_TIME).to_pylist())
    return latest if latest.tzinfo else latest.replace(tzinfo=dt.UTC)
