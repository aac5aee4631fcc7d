"""Replay parity: do served scores equal the offline, point-in-time ones on the same transactions?

The check behind the training/serving skew figures (docs/monitoring.md) and the replay tests:

1. :func:`rewind_online_store` puts the online store back to time T: batch views materialized up to T, customer
   rows and the customer event log rebuilt from the transactions up to T only;
2. :func:`replay` sends the later transactions to a running service's ``/predict``, one at a time and in time
   order, with their own ids and timestamps, crossing midnight the way the daily batch would (the merchant rows
   of day D are materialized when the replay reaches D);
3. :func:`offline_reference` scores the same transactions with the same model on the rows the dataset stage
   builds (point-in-time join through the feature service) and :func:`compare` puts both side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_recipes.contract import (
    ACCOUNT_CREATED,
    AMOUNT,
    CUSTOMER,
    EVENT_TIME,
    LABEL,
    MERCHANT,
    TRANSACTION_ID,
)
from mlops_recipes.observability import PREDICT
from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    from mlops_recipes.io.models import LoadedModel


@dataclass(frozen=True)
class ParityReport:
    """Served against offline on the same transactions."""

    rows: int
    equal_scores: int  # |served - offline| <= 1e-6
    max_abs_diff: float
    mean_abs_diff: float
    recall_offline: float
    recall_served: float
    precision_offline: float
    precision_served: float

    @property
    def equal_share(self) -> float:
        """Share of transactions whose served score equals the offline one."""
        return self.equal_scores / self.rows if self.rows else math.nan


def rewind_online_store(settings: Settings, transactions: pd.DataFrame, until: pd.Timestamp) -> dict[str, Any]:
    """The online store and customer event log as they were at ``until``: only what happened up to then.

    Destructive: it tears the online store down first (a replay's set-up, not for a live store).
    """
    from mlops_recipes.io import feature_store
    from mlops_recipes.io.customer_events import CustomerUpdates

    store = feature_store.open_store(settings)
    feature_store.reset_online_store(store)  # the registry stays: the definitions are the same
    updates = CustomerUpdates(store)
    updates.log.clear()
    before = transactions[transactions[EVENT_TIME] <= until]
    start = before[EVENT_TIME].min().to_pydatetime()
    views = feature_store.materialize_batch_views(store, start=start, end=until.to_pydatetime())
    return {"views": views, **updates.rebuild(before)}


def daily_batch(settings: Settings) -> Callable[[pd.Timestamp], None]:
    """``on_new_day`` for :func:`replay`: materialize the batch views' rows of the new day, as the daily job does."""
    import datetime as dt

    from mlops_recipes.io import feature_store

    store = feature_store.open_store(settings)

    def materialize(midnight: pd.Timestamp) -> None:
        start = (midnight - pd.Timedelta(days=1)).to_pydatetime()
        feature_store.materialize_batch_views(
            store, start=start, end=midnight.to_pydatetime() + dt.timedelta(seconds=1)
        )

    return materialize


def replay(
    url: str,
    transactions: pd.DataFrame,
    *,
    since: pd.Timestamp,
    fields: Sequence[str] = (),
    on_new_day: Callable[[pd.Timestamp], None] | None = None,
    timeout: float = 10.0,
) -> pd.DataFrame:
    """POST each transaction to ``url``/predict in time order; the served score and decision per transaction_id.

    ``fields`` are the contract's other request fields (categorical and numeric) to send; ``since`` is the time the
    store was rewound to; ``on_new_day(midnight)`` runs before the first transaction of
    each day after that one (the daily batch's turn).
    """
    import httpx

    ordered = transactions.sort_values([EVENT_TIME, TRANSACTION_ID], kind="stable")
    served = []
    day = since.floor("D")
    with httpx.Client(base_url=url, timeout=timeout) as client:
        for row in ordered.to_dict("records"):
            when = pd.Timestamp(row[EVENT_TIME])
            today = when.floor("D")
            if today != day and on_new_day is not None:
                on_new_day(today)
            day = today
            body = {
                TRANSACTION_ID: str(row[TRANSACTION_ID]),
                CUSTOMER: int(row[CUSTOMER]),
                MERCHANT: int(row[MERCHANT]),
                AMOUNT: float(row[AMOUNT]),
                **{name: row[name] for name in fields},
                EVENT_TIME: when.isoformat(),
                ACCOUNT_CREATED: pd.Timestamp(row[ACCOUNT_CREATED]).isoformat(),
            }
            response = client.post(PREDICT, json=body)
            response.raise_for_status()
            answer = response.json()
            served.append(
                {
                    TRANSACTION_ID: row[TRANSACTION_ID],
                    "served_score": answer["fraud_probability"],
                    "served_decision": answer[LABEL],
                }
            )
    return pd.DataFrame(served)


def offline_reference(settings: Settings, transactions: pd.DataFrame, model: LoadedModel) -> pd.DataFrame:
    """Model inputs as the dataset stage builds them (point in time) and ``model``'s scores on them."""
    from mlops_recipes.io import feature_store
    from mlops_recipes.model_inputs import offline_rows

    store = feature_store.open_store(settings)
    frame = offline_rows(store, transactions, model.feature_service, settings.contract(), extra_columns=(LABEL,))
    return frame.assign(offline_score=model.score_frame(frame))


def compare(served: pd.DataFrame, offline: pd.DataFrame, *, threshold: float) -> ParityReport:
    """Served against offline scores, and recall/precision of both at ``threshold`` against the labels."""
    both = offline.merge(served, on=TRANSACTION_ID, validate="one_to_one")
    diff = (both["served_score"] - both["offline_score"]).abs().to_numpy()
    labels = both[LABEL].to_numpy().astype(bool)

    def recall_precision(flags: np.ndarray) -> tuple[float, float]:
        hits = float((flags & labels).sum())
        return hits / max(float(labels.sum()), 1.0), hits / max(float(flags.sum()), 1.0)

    recall_offline, precision_offline = recall_precision(both["offline_score"].to_numpy() >= threshold)
    recall_served, precision_served = recall_precision(both["served_decision"].to_numpy().astype(bool))
    return ParityReport(
        rows=len(both),
        equal_scores=int((diff <= 1e-6).sum()),
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
        mean_abs_diff=float(diff.mean()) if len(diff) else 0.0,
        recall_offline=recall_offline,
        recall_served=recall_served,
        precision_offline=precision_offline,
        precision_served=precision_served,
    )
