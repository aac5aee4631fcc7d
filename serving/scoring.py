"""Scoring: online features + request fields → the shared request-time transformation → the model."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops_recipes.core.aggregates import CUSTOMER_FEATURES, MERCHANT_FEATURES
from mlops_recipes.core.request_features import STORED_FEATURES, request_features
from serving.features import OnlineFeatures
from serving.metrics import ServiceMetrics
from serving.model import LoadedModel
from serving.monitoring import LiveMonitor
from serving.schemas import Prediction, Transaction


def _as_float_column(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def model_matrix(
    stored: dict[str, list[Any]], transactions: Sequence[Transaction], features: Sequence[str], *, now: float
) -> np.ndarray:
    """The model's input rows: stored features and request fields through ``request_features``."""
    columns: dict[str, Any] = {name: _as_float_column(stored[name]) for name in STORED_FEATURES}
    columns["amount"] = np.array([t.amount for t in transactions], dtype=np.float64)
    columns["channel"] = np.array([t.channel for t in transactions])
    columns["event_timestamp"] = np.array(
        [now if t.event_timestamp is None else _epoch(t.event_timestamp) for t in transactions], dtype=np.float64
    )
    inputs = request_features(columns)
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
    threshold: float,
    metrics: ServiceMetrics,
    monitor: LiveMonitor | None = None,
) -> list[Prediction]:
    """Score ``transactions`` with ``model``; count what was missing; feed the drift and label monitor."""
    started = time.perf_counter()
    stored = features.lookup(
        model.feature_service, [{"customer_id": t.customer_id, "merchant_id": t.merchant_id} for t in transactions]
    )
    metrics.feature_lookup_latency.observe(time.perf_counter() - started)
    matrix = model_matrix(stored, transactions, model.features, now=time.time())
    probabilities, decisions = score_rows(
        matrix,
        model=model,
        threshold=threshold,
        metrics=metrics,
        monitor=monitor,
        transaction_ids=[t.transaction_id for t in transactions],
    )

    predictions = []
    for row, probability in enumerate(probabilities.tolist()):
        missing = [name for name in STORED_FEATURES if stored[name][row] is None]
        for name in missing:
            metrics.missing_features.labels(name).inc()
        if all(stored[name][row] is None for name in CUSTOMER_FEATURES):
            metrics.unknown_entities.labels("customer").inc()
        if all(stored[name][row] is None for name in MERCHANT_FEATURES):
            metrics.unknown_entities.labels("merchant").inc()
        predictions.append(
            Prediction(
                transaction_id=transactions[row].transaction_id,
                fraud_probability=probability,
                is_fraud=decisions[row],
                threshold=threshold,
                model_name=model.name,
                model_version=model.version,
                missing_features=missing,
            )
        )
    return predictions


def score_rows(
    matrix: np.ndarray,
    *,
    model: LoadedModel,
    threshold: float,
    metrics: ServiceMetrics,
    monitor: LiveMonitor | None = None,
    transaction_ids: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, list[bool]]:
    """The model call on assembled rows, with what every scoring route records: latency, scores, decisions, drift.

    :func:`score` calls it after the feature lookup; the Open Inference Protocol's infer (rows sent as tensors)
    calls it directly, so both feed the same metrics and the same drift window.
    """
    started = time.perf_counter()
    probabilities = model.predict(matrix)
    metrics.inference_latency.observe(time.perf_counter() - started)

    decisions = [bool(p >= threshold) for p in probabilities.tolist()]
    if monitor is not None:
        ids = list(transaction_ids) if transaction_ids is not None else [None] * len(decisions)
        monitor.observe(model, matrix, probabilities, decisions, ids)
    for probability, is_fraud in zip(probabilities.tolist(), decisions, strict=True):
        metrics.scores.labels(model.version).observe(probability)
        metrics.predictions.labels(model.version, "fraud" if is_fraud else "legit").inc()
    return probabilities, decisions
