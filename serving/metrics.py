"""Prometheus metrics of the service, multiprocess-aware.

Metrics are created per app on their own registry (no import-time global state). With several worker
processes, ``PROMETHEUS_MULTIPROC_DIR`` must be set before Python imports ``prometheus_client`` or Feast
(Feast would otherwise point it at a temp dir of its own): ``python -m serving`` does that. Labels stay low
in cardinality: routes, status classes, model versions, feature names; never entity ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

# Sub-millisecond resolution at the bottom: a model call and an online lookup each take well under 1 ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def multiprocess_dir() -> str | None:
    """Where this process writes metric values, or None in single-process mode.

    Decided by whether ``prometheus_client`` chose memory-mapped values at import, not by the variable now:
    an ``import feast`` after ``prometheus_client`` sets the variable without switching the values over, and
    reading that directory would silently drop every app metric.
    """
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass(frozen=True)
class ServiceMetrics:
    """Every metric the service exports."""

    registry: CollectorRegistry
    directory: str | None
    requests: Counter
    request_latency: Histogram
    inference_latency: Histogram
    feature_lookup_latency: Histogram
    missing_features: Counter
    unknown_entities: Counter
    scores: Histogram
    predictions: Counter
    model_info: Gauge
    reloads: Counter
    store_errors: Counter

    @classmethod
    def create(cls) -> ServiceMetrics:
        """Register the metrics on a fresh registry."""
        registry = CollectorRegistry(auto_describe=True)
        return cls(
            registry=registry,
            directory=multiprocess_dir(),
            requests=Counter(
                "http_requests_total",
                "HTTP requests by route template, method and status class (2xx, 4xx, 5xx).",
                ["route", "method", "status"],
                registry=registry,
            ),
            request_latency=Histogram(
                "http_request_duration_seconds",
                "HTTP request latency by route template.",
                ["route", "method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            inference_latency=Histogram(
                "model_inference_duration_seconds",
                "Time of the model call alone (predict_proba on the assembled rows).",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            feature_lookup_latency=Histogram(
                "feature_lookup_duration_seconds",
                "Time of the online feature store lookup.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            missing_features=Counter(
                "missing_features_total",
                "Stored features that were missing at scoring time, by feature.",
                ["feature"],
                registry=registry,
            ),
            unknown_entities=Counter(
                "unknown_entities_total",
                "Scored transactions whose customer or merchant has no features online.",
                ["entity"],
                registry=registry,
            ),
            scores=Histogram(
                "prediction_score",
                "Fraud probabilities returned, by model version.",
                ["model_version"],
                buckets=SCORE_BUCKETS,
                registry=registry,
            ),
            predictions=Counter(
                "predictions_total",
                "Decisions returned, by model version and decision.",
                ["model_version", "decision"],
                registry=registry,
            ),
            model_info=Gauge(
                "model_info",
                "The model being served: 1 for the current version, 0 for versions served before.",
                ["model_name", "model_version", "feature_service"],
                multiprocess_mode="livemax",
                registry=registry,
            ),
            reloads=Counter(
                "model_reloads_total",
                "Model (re)loads by result (success, failure).",
                ["result"],
                registry=registry,
            ),
            store_errors=Counter(
                "feature_store_errors_total",
                "Online feature store lookups that failed.",
                registry=registry,
            ),
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition: merged over worker processes in multiprocess mode."""
        if self.directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST
