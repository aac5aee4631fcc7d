"""merchant_stats: the merchant's volume and smoothed fraud rate over the seven full days before each day.

One row per merchant and day D, stamped at the start of D (a daily batch job), computed by
:func:`mlops_recipes.core.aggregates.merchant_stats`; the fraud rate is shrunk toward the all-merchant rate with
``features.merchant_rate_prior_weight`` (params.yaml) so that small merchants do not swing between 0 and 1.
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
    """The daily rows, with the fraud-rate prior of ``params``."""
    return aggregates.merchant_stats(transactions, prior_weight=params.merchant_rate_prior_weight)


VIEW = FeatureViewSpec(
    name="merchant_stats",
    entity="merchant",
    features=(
        StoredFeature("merch_txn_count_7d", "int64"),
        StoredFeature("merch_fraud_rate_7d", "float64"),
        StoredFeature("merch_amount_mean_7d", "float64"),
    ),
    # A daily batch: older than two days means the batch stopped.
    ttl=timedelta(days=2),
    refresh="daily",
    compute=compute,
    description="Merchant risk: volume, smoothed fraud rate and mean amount over the seven days before the stamp.",
    since="fraud_model_v1",
)
