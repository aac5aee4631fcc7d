"""Scoring: online features + request fields → the shared request-time transformation → the model."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops_recipes.contract import AMOUNT, CUSTOMER, EVENT_TIME, MERCHANT, Contract
from mlops_recipes.core.aggregates import CUSTOMER_FEATURES, MERCHANT_FEATURES
from mlops_recipes.core.request_features import request_features, stored_features
from serving.features import OnlineFeatures
from serving.metrics import ServiceMetrics
from serving.model import LoadedModel
from serving.monitoring import LiveMonitor
from serving.schemas import Prediction, Transaction


def _as_float_column(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def model_matrix(
    stored: dict[str, list[Any]],
    transactions: Sequence[Transaction],
    features: Sequence[str],
    contract: Contract,
    *,
    now: float,
) -> np.ndarray:
    """The model's input rows: stored features and request fields through ``request_features``."""
    columns: dict[str, Any] = {name: _as_float_column(stored[name]) for name in stored_features(contract)}
    columns[AMOUNT] = np.array([getattr(t, AMOUNT) for t in transactions], dtype=np.float64)
    for name in contract.categorical:
        columns[name] = np.array([getattr(t, name) for t in transactions])
    for name in contract.numeric:
        columns[name] = _as_float_column([getattr(t, name) for t in transactions])
    columns[EVENT_TIME] = np.array(
        [now if t.event_timestamp is None else _epoch(t.event_timestamp) for t in transactions], dtype=np.float64
    )
    inputs = request_features(columns, contract)
    return np.column_stack([inputs[name] for name in features])


def _epoch(value: dt.datetime) -> float:
    if value.tzinfo is None:  # naive timestamps are UTC, as everywhere in the pipeline
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def score(
    transactions: Sequence[Transaction],
    *,
    model: LoadedModel,
    features: OnlineFeatures,
    contract: Contract,
    threshold: float,
    metrics: ServiceMetrics,
    monitor: LiveMonitor | None = None,
) -> list[Prediction]:
    """Score ``transactions`` with ``model``; count what was missing; feed the drift and label monitor."""
    started = time.perf_counter()
    stored = features.lookup(
        model.feature_service,
        [{CUSTOMER: getattr(t, CUSTOMER), MERCHANT: getattr(t, MERCHANT)} for t in transactions],
    )
    metrics.feature_lookup_latency.observe(time.perf_counter() - started)
    matrix = model_matrix(stored, transactions, model.features, contract, now=time.time())
    for name, spec in contract.categorical.items():  # only open fields let such values through the API
        unseen = sum(getattr(t, name) not in spec.values for t in transactions)
        if unseen:
            metrics.unseen_categories.labels(name).inc(unseen)

    started = time.perf_counter()
    probabilities = model.predict(matrix)
    metrics.inference_latency.observe(time.perf_counter() - started)

    decisions = [bool(p >= threshold) for p in probabilities.tolist()]
    if monitor is not None:
        monitor.observe(model, matrix, probabilities, decisions, [t.transaction_id for t in transactions])

    predictions = []
    for row, probability in enumerate(probabilities.tolist()):
        missing = [name for name in stored_features(contract) if stored[name][row] is None]
        for name in missing:
            metrics.missing_features.labels(name).inc()
        if all(stored[name][row] is None for name in CUSTOMER_FEATURES if name in stored):
            metrics.unknown_entities.labels("customer").inc()
        if all(stored[name][row] is None for name in MERCHANT_FEATURES):
            metrics.unknown_entities.labels("merchant").inc()
        is_fraud = decisions[row]
        metrics.scores.labels(model.version).observe(probability)
        metrics.predictions.labels(model.version, "fraud" if is_fraud else "legit").inc()
        predictions.append(
            Prediction(
                transaction_id=transactions[row].transaction_id,
                fraud_probability=probability,
                is_fraud=is_fraud,
                threshold=threshold,
                model_name=model.name,
                model_version=model.version,
                missing_features=missing,
            )
        )
    return predictions
