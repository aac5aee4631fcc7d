"""Feast definitions for fraud detection: entities, sources, feature views and the feature service.

The feature service is the contract between training and serving: the training set is built from it with
``get_historical_features`` (point in time), the online service reads the same one with
``get_online_features``, and its name is tagged on every MLflow model version. Change a feature → add a
new versioned service (``fraud_model_v2``) and point ``features.service`` in ``params.yaml`` at it.

The tables behind the sources are computed by ``mlops_recipes.core.aggregates`` in the ``features`` stage
and written under ``$MLOPS_DATA_DIR/features`` (default ``data/features`` in the project root, as in
``mlops_recipes.settings``). Source paths are resolved here because the DuckDB offline store reads them
relative to the working directory, not to this folder.

The entities' key types and the customer view's fields follow the data contract (``contract.yaml`` in the
project root, or ``$MLOPS_CONTRACT_FILE``): string or integer keys, and no account-creation feature when the
data has no account-creation date.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

from mlops_recipes.contract import CUSTOMER, EVENT_TIME, MERCHANT, load_contract

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
FEATURE_TABLES = _PROJECT_ROOT / os.environ.get("MLOPS_DATA_DIR", "data") / "features"
CONTRACT = load_contract(_PROJECT_ROOT / os.environ.get("MLOPS_CONTRACT_FILE", "contract.yaml"))
_KEY_TYPES = {"int": ValueType.INT64, "string": ValueType.STRING}

# A cardholder; the key every customer feature is looked up by.
customer = Entity(
    name="customer",
    join_keys=[CUSTOMER],
    value_type=_KEY_TYPES[CONTRACT.id_type(CUSTOMER)],
    description="A card holder.",
)

# A merchant accepting card payments.
merchant = Entity(
    name="merchant",
    join_keys=[MERCHANT],
    value_type=_KEY_TYPES[CONTRACT.id_type(MERCHANT)],
    description="A merchant accepting card payments.",
)

# One row per transaction: the customer's state just after it (rolling windows over their own history).
customer_stats_source = FileSource(
    name="customer_stats_source",
    path=str(FEATURE_TABLES / "customer_stats.parquet"),
    timestamp_field=EVENT_TIME,
)

# Daily rows: the merchant's volume and smoothed fraud rate over the seven days before the stamp.
merchant_stats_source = FileSource(
    name="merchant_stats_source",
    path=str(FEATURE_TABLES / "merchant_stats.parquet"),
    timestamp_field=EVENT_TIME,
)

# Customer activity. TTL: a customer silent for 30 days has no recent state worth serving.
customer_stats_fv = FeatureView(
    name="customer_stats",
    entities=[customer],
    ttl=timedelta(days=30),
    schema=[
        Field(name="cust_txn_count_1h", dtype=Int64),
        Field(name="cust_txn_count_24h", dtype=Int64),
        Field(name="cust_txn_count_7d", dtype=Int64),
        Field(name="cust_amount_sum_1h", dtype=Float64),
        Field(name="cust_amount_sum_24h", dtype=Float64),
        Field(name="cust_amount_sum_7d", dtype=Float64),
        Field(name="cust_amount_mean_30d", dtype=Float64),
        Field(name="cust_amount_std_30d", dtype=Float64),
        Field(name="cust_last_txn_ts", dtype=Float64),
        # Only when the data has an account-creation date (contract: columns.account_created).
        *([Field(name="cust_account_created_ts", dtype=Float64)] if CONTRACT.has_account_created else []),
    ],
    online=True,
    source=customer_stats_source,
    tags={"team": "fraud", "refresh": "per-transaction"},
)

# Merchant risk. TTL: a daily batch; older than two days means the batch stopped.
merchant_stats_fv = FeatureView(
    name="merchant_stats",
    entities=[merchant],
    ttl=timedelta(days=2),
    schema=[
        Field(name="merch_txn_count_7d", dtype=Int64),
        Field(name="merch_fraud_rate_7d", dtype=Float64),
        Field(name="merch_amount_mean_7d", dtype=Float64),
    ],
    online=True,
    source=merchant_stats_source,
    tags={"team": "fraud", "refresh": "daily"},
)

# The contract of fraud_model_v1: every stored feature the model reads.
fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[customer_stats_fv, merchant_stats_fv],
    description="Features of the card-fraud model, version 1.",
)
