"""Scoring: online features + request fields → the shared request-time transformation → the model.

After scoring, every transaction is recorded in its customer's online features (:func:`record_scored`), so that
the customer's next transaction is scored on features that include it, as in training.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlops_recipes.contract import ACCOUNT_CREATED, AMOUNT, CUSTOMER, MERCHANT, TRANSACTION_ID, Contract
from mlops_recipes.io.customer_events import CustomerEvent, CustomerKey, time_us
from mlops_recipes.model_inputs import online_matrix
from mlops_recipes.views import customer_stats as customer_view
from mlops_recipes.views import entity_features, stored_features
from serving.features import OnlineFeatures
from serving.metrics import ServiceMetrics
from serving.model import LoadedModel
from serving.monitoring import LiveMonitor
from serving.schemas import Prediction, Transaction

_log = logging.getLogger("serving.scoring")

# Called after the model call with (model, rows, probabilities, decisions, seconds of the call): a rollout's
# per-variant metrics and its shadow queue (serving/rollout.py). None without a rollout.
OnScored = Callable[[LoadedModel, np.ndarray, np.ndarray, list[bool], float], None]


# The online face of the library's row builder (the dataset stage and batch scoring use its offline face).
model_matrix = online_matrix


def score(
    transactions: Sequence[Transaction],
    *,
    model: LoadedModel,
    features: OnlineFeatures,
    contract: Contract,
    metrics: ServiceMetrics,
    monitor: LiveMonitor | None = None,
    on_scored: OnScored | None = None,
) -> list[Prediction]:
    """Score ``transactions`` with ``model`` (deciding at its threshold); count what was missing; feed the monitor."""
    started = time.perf_counter()
    stored = features.lookup(
        model.feature_service,
        [{CUSTOMER: getattr(t, CUSTOMER), MERCHANT: getattr(t, MERCHANT)} for t in transactions],
    )
    now = time.time()
    events = customer_events(transactions, now=now)
    if features.update_customers:
        as_of_each_event(stored, events, features=features)
    metrics.feature_lookup_latency.observe(time.perf_counter() - started)
    matrix = model_matrix(stored, transactions, model.features, contract, now=now, service=model.feature_service)
    for name, spec in contract.categorical.items():  # only open fields let such values through the API
        unseen = sum(getattr(t, name) not in spec.values for t in transactions)
        if unseen:
            metrics.unseen_categories.labels(name).inc(unseen)
    probabilities, decisions = score_rows(
        matrix,
        model=model,
        metrics=metrics,
        monitor=monitor,
        transaction_ids=[t.transaction_id for t in transactions],
        on_scored=on_scored,
    )

    # The stored features of the model's service, in order and per entity its views are keyed by.
    service_features = stored_features(contract, model.feature_service)
    by_entity = entity_features(contract, model.feature_service)
    predictions = []
    for row, probability in enumerate(probabilities.tolist()):
        missing = [name for name in service_features if stored[name][row] is None]
        for name in missing:
            metrics.missing_features.labels(name).inc()
        for entity, names in by_entity.items():  # unknown: none of its views has a row for the key
            if all(stored[name][row] is None for name in names):
                metrics.unknown_entities.labels(entity).inc()
        predictions.append(
            Prediction(
                transaction_id=transactions[row].transaction_id,
                fraud_probability=probability,
                is_fraud=decisions[row],
                threshold=model.threshold,
                model_name=model.name,
                model_version=model.version,
                missing_features=missing,
            )
        )
    if features.update_customers:
        record_scored(transactions, events, stored, features=features, metrics=metrics)
    return predictions


def customer_events(transactions: Sequence[Transaction], *, now: float) -> list[CustomerEvent]:
    """The transactions as their customers' history records them (a random id where the caller sent none)."""
    return [
        CustomerEvent(
            customer_id=getattr(t, CUSTOMER),
            transaction_id=t.transaction_id or uuid.uuid4().hex,
            time_us=int(now * 1e6) if t.event_timestamp is None else time_us(t.event_timestamp),
            amount=getattr(t, AMOUNT),
        )
        for t in transactions
    ]


def as_of_each_event(
    stored: dict[str, list[Any]], events: Sequence[CustomerEvent], *, features: OnlineFeatures
) -> None:
    """Replace customer rows that already count events at or after the transaction's own time.

    The online row is the state after the customer's latest recorded event. For a transaction at the same
    instant as that event, earlier than it (a late event) or already recorded (a client's retry), training's
    point-in-time row is the state just *before* the transaction: it is computed from the customer event log.
    Rare by construction (the check is one comparison per row; the log is read only then).
    """
    last = stored.get("cust_last_txn_ts")
    if last is None:
        return
    for row, event in enumerate(events):
        value = last[row]
        if value is None or not round(float(value) * 1e6) >= event.time_us:
            continue
        try:
            before = features.row_before(event.customer_id, event.time_us)
        except Exception as error:  # keep the stored row: a score on it beats no score
            _log.warning("customer row before the transaction unavailable: %s: %s", type(error).__name__, error)
            continue
        for name in customer_view.VIEW.names:  # the view customer_row computes
            if name in stored:  # without account dates the service has no account-age feature
                stored[name][row] = None if before is None else before[name]


def record_scored(
    transactions: Sequence[Transaction],
    events: Sequence[CustomerEvent],
    stored: dict[str, list[Any]],
    *,
    features: OnlineFeatures,
    metrics: ServiceMetrics,
) -> None:
    """Record scored transactions in their customers' online features: one update for the whole batch.

    Called once the scores are computed, with the stored features they were computed on: the transactions of one
    batch are all scored on the state before the batch. A failure (store down, lock not obtained) is counted in
    ``customer_feature_updates_total{outcome="failed"}`` per transaction and logged, never raised: the response
    stands, and the customer's history is left as it was. Without a ``transaction_id`` a transaction cannot be
    recognised when retried, so it gets a random one (counted again if sent again). The account creation time is
    the request's (``account_created_at``) or the stored row's; the log keeps the first it learns.
    """
    stored_created = stored.get("cust_account_created_ts", [None] * len(transactions))
    created: dict[CustomerKey, float] = {}
    for row in sorted(range(len(events)), key=lambda i: events[i].time_us):  # the first a customer's events tell
        opened = getattr(transactions[row], ACCOUNT_CREATED, None)  # absent without account dates
        given = stored_created[row] if opened is None else time_us(opened) / 1e6
        if given is not None:
            created.setdefault(events[row].customer_id, given)
    started = time.perf_counter()
    outcomes = features.record_all(events, created)
    metrics.customer_update_latency.observe(time.perf_counter() - started)
    sent = collections.Counter(e.customer_id for e in events)
    for customer, outcome in outcomes.items():
        if isinstance(outcome, Exception):  # the score is computed: nothing here may fail the response
            metrics.customer_updates.labels("failed").inc(sent[customer])
            _log.error(
                "customer features not updated after scoring: %s: %s",
                type(outcome).__name__,
                outcome,
                extra={
                    CUSTOMER: customer,
                    TRANSACTION_ID: [e.transaction_id for e in events if e.customer_id == customer],
                },
            )
            continue
        if outcome:
            metrics.customer_updates.labels("counted").inc(outcome)
        if sent[customer] > outcome:
            metrics.customer_updates.labels("duplicate").inc(sent[customer] - outcome)
    view = features.updated_view
    if view is not None and features.newest_event_s > 0:
        metrics.newest_event.labels(view).set(features.newest_event_s)


def score_rows(
    matrix: np.ndarray,
    *,
    model: LoadedModel,
    metrics: ServiceMetrics,
    monitor: LiveMonitor | None = None,
    transaction_ids: Sequence[str | None] | None = None,
    on_scored: OnScored | None = None,
) -> tuple[np.ndarray, list[bool]]:
    """The model call on assembled rows, with what every scoring route records: latency, scores, decisions, drift.

    :func:`score` calls it after the feature lookup; the Open Inference Protocol's infer (rows sent as tensors)
    calls it directly, so both feed the same metrics and the same drift window.
    """
    started = time.perf_counter()
    probabilities = model.predict(matrix)
    elapsed = time.perf_counter() - started
    metrics.inference_latency.observe(elapsed)

    decisions = [bool(p >= model.threshold) for p in probabilities.tolist()]
    if monitor is not None:
        ids = list(transaction_ids) if transaction_ids is not None else [None] * len(decisions)
        monitor.observe(model, matrix, probabilities, decisions, ids)
    for probability, is_fraud in zip(probabilities.tolist(), decisions, strict=True):
        metrics.scores.labels(model.version).observe(probability)
        metrics.predictions.labels(model.version, "fraud" if is_fraud else "legit").inc()
    if on_scored is not None:
        on_scored(model, matrix, probabilities, decisions, elapsed)
    return probabilities, decisions
