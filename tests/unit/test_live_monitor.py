"""serving/monitoring.py: label matching, bounded memory and drift publication, on a real metrics registry."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_recipes.core.drift import DriftReference
from mlops_recipes.io.models import LoadedModel
from serving.metrics import ServiceMetrics
from serving.monitoring import LiveMonitor, feature_source, outcome

pytestmark = pytest.mark.unit


def _model(version: str, *, reference: bool = True) -> LoadedModel:
    rng = np.random.default_rng(0)
    drift = DriftReference.build(rng.normal(size=(2_000, 2)), ["amount", "cust_txn_count_1h"], rng.random(2_000))
    return LoadedModel(
        uri=f"models:/m/{version}",
        features=("amount", "cust_txn_count_1h"),
        estimator=None,
        name="m",
        version=version,
        run_id=None,
        feature_service="svc",
        threshold=0.5,
        drift_reference=drift if reference else None,
    )


def _value(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.mark.parametrize(
    ("predicted", "actual", "cell"),
    [(True, True, "tp"), (True, False, "fp"), (False, True, "fn"), (False, False, "tn")],
)
def test_outcome_cells(predicted: bool, actual: bool, cell: str) -> None:
    assert outcome(predicted=predicted, actual=actual) == cell


def test_labels_match_remembered_scores_once_and_count_the_rest() -> None:
    metrics = ServiceMetrics.create()
    monitor = LiveMonitor(metrics, window_rows=100, min_rows=10, remembered_scores=1_000)
    model = _model("3")
    monitor.observe(model, np.zeros((3, 2)), np.array([0.9, 0.1, 0.2]), [True, False, False], ["a", "b", None])

    result = monitor.label([("a", True), ("b", True), ("nope", False), ("a", True)])
    assert result.matched == 2
    assert result.unmatched_ids == ["nope", "a"]  # "a" was already labelled: each score counts once
    assert _value(metrics, "feedback_labels_total", model_version="3", outcome="tp") == 1
    assert _value(metrics, "feedback_labels_total", model_version="3", outcome="fn") == 1
    assert _value(metrics, "feedback_unmatched_total") == 2


def test_memory_of_scores_is_bounded_oldest_first() -> None:
    monitor = LiveMonitor(ServiceMetrics.create(), window_rows=100, min_rows=10, remembered_scores=2)
    model = _model("1")
    for tid in ("t1", "t2", "t3"):
        monitor.observe(model, np.zeros((1, 2)), np.array([0.5]), [False], [tid])
    assert monitor.label([("t1", False), ("t2", False), ("t3", False)]).unmatched_ids == ["t1"]


def test_drift_is_published_from_min_rows_on_and_restarts_with_a_new_model() -> None:
    metrics = ServiceMetrics.create()
    monitor = LiveMonitor(metrics, window_rows=500, min_rows=200, remembered_scores=10)
    rng = np.random.default_rng(1)
    shifted = np.column_stack([rng.normal(5, 1, 150), rng.normal(size=150)])
    monitor.observe(_model("1"), shifted, rng.random(150), [False] * 150, [None] * 150)
    monitor.publish_drift()
    assert _value(metrics, "drift_window_rows") == 150
    assert _value(metrics, "feature_drift_psi", feature="amount", source="request") is None  # not enough rows

    monitor.observe(_model("1"), shifted, rng.random(150), [False] * 150, [None] * 150)
    monitor.publish_drift()
    assert _value(metrics, "feature_drift_psi", feature="amount", source="request") > 1.0  # type: ignore[operator]
    assert _value(metrics, "feature_drift_psi", feature="cust_txn_count_1h", source="stored") < 0.2  # type: ignore[operator]

    monitor.observe(_model("2"), shifted[:10], rng.random(10), [False] * 10, [None] * 10)
    monitor.publish_drift()
    assert _value(metrics, "drift_window_rows") == 10  # a new model starts a new window


def test_a_model_without_reference_is_served_without_drift_figures() -> None:
    metrics = ServiceMetrics.create()
    monitor = LiveMonitor(metrics, window_rows=100, min_rows=1, remembered_scores=10)
    monitor.observe(_model("1", reference=False), np.zeros((5, 2)), np.zeros(5), [False] * 5, ["x"] * 5)
    monitor.publish_drift()
    assert _value(metrics, "drift_window_rows") == 0
    assert _value(metrics, "feature_drift_psi", feature="amount", source="request") is None
    assert monitor.label([("x", False)]).matched == 1


def test_feature_source_marks_request_only_inputs() -> None:
    assert feature_source("amount") == "request"
    assert feature_source("channel_online") == "request"
    assert feature_source("amount_zscore") == "stored"  # uses the stored mean and spread
    assert feature_source("merch_fraud_rate_7d") == "stored"
