"""customer_stats: the customer's activity just after each of their transactions, updated per transaction.

One row per transaction: rolling counts and amounts over 1 h / 24 h / 7 d, the 30-day amount norm, the last
transaction time and the account creation time (:func:`mlops_recipes.core.aggregates.customer_stats`). The service
keeps the online rows current after every transaction it scores, from the customer event log and the same row in
incremental form (:func:`mlops_recipes.core.aggregates.customer_row`); batch materialization never writes them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from mlops_recipes.core import aggregates
from mlops_recipes.views import FeatureViewSpec, StoredFeature

if TYPE_CHECKING:
    import pandas as pd

    from mlops_recipes.params import FeatureParams


def compute(transactions: pd.DataFrame, params: FeatureParams) -> pd.DataFrame:
    """The batch table: the state after each transaction (no parameter)."""
    return aggregates.customer_stats(transactions)


VIEW = FeatureViewSpec(
    name="customer_stats",
    entity="customer",
    features=(
        StoredFeature("cust_txn_count_1h", "int64"),
        StoredFeature("cust_txn_count_24h", "int64"),
        StoredFeature("cust_txn_count_7d", "int64"),
        StoredFeature("cust_amount_sum_1h", "float64"),
        StoredFeature("cust_amount_sum_24h", "float64"),
        StoredFeature("cust_amount_sum_7d", "float64"),
        StoredFeature("cust_amount_mean_30d", "float64"),
        StoredFeature("cust_amount_std_30d", "float64"),
        # Absolute times (epoch seconds): inputs of derived features only (time since the last transaction, age).
        StoredFeature("cust_last_txn_ts", "float64", model_input=False),
        StoredFeature("cust_account_created_ts", "float64", model_input=False, needs="account_created"),
    ),
    # A customer silent for 30 days has no recent state worth serving.
    ttl=timedelta(days=30),
    refresh="per-transaction",
    compute=compute,
    description="Customer activity: rolling counts and amounts, the 30-day amount norm, last transaction time.",
    since="fraud_model_v1",
)
