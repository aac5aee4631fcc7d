"""Prometheus metrics of the service, multiprocess-aware.

Metrics are created per app on their own registry (no import-time global state). With several worker
processes, ``PROMETHEUS_MULTIPROC_DIR`` must be set before Python imports ``prometheus_client`` or Feast
(Feast would otherwise point it at a temp dir of its own): ``python -m serving`` does that. Labels stay low
in cardinality: routes, status classes, model versions, feature names; never entity ids. The names the SLOs, the
alert rules and the dashboards select on, and the buckets, are the library's observability contract
(:mod:`mlops_recipes.observability`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

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

from mlops_recipes.observability import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    LATENCY_BUCKETS,
    METHOD,
    ROUTE,
    SCORE_BUCKETS,
    STATUS,
)
from mlops_recipes.processes import alive


def multiprocess_dir() -> str | None:
    """Where this process writes metric values, or None in single-process mode.

    Decided by whether ``prometheus_client`` chose memory-mapped values at import, not by the variable now:
    an ``import feast`` after ``prometheus_client`` sets the variable without switching the values over, and
    reading that directory would silently drop every app metric.
    """
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


_VALUE_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")  # counter_123.db, gauge_livemax_123.db: the writer's pid


def sweep_dead_workers(directory: str) -> list[int]:
    """Drop the live gauges (``live*`` modes) of worker processes that no longer run; returns their pids.

    A worker killed with SIGKILL never says it is gone: its files stayed and were merged into every scrape (a
    stale drift value kept a retrain alert firing, a stale ``model_info`` fired version skew). Counters and
    histograms stay: their totals must never go backwards.
    """
    pids = {int(match.group(1)) for name in os.listdir(directory) if (match := _VALUE_FILE.match(name))}
    dead = sorted(pid for pid in pids if pid != os.getpid() and not alive(pid))
    for pid in dead:
        if any(Path(directory).glob(f"gauge_live*_{pid}.db")):
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    return dead


@dataclass(frozen=True)
class ServiceMetrics:
    """Every metric the service exports."""

    registry: CollectorRegistry
    directory: str | None
    requests: Counter
    request_latency: Histogram
    inference_latency: Histogram
    feature_lookup_latency: Histogram
    scoring_batch: Histogram
    missing_features: Counter
    unknown_entities: Counter
    unseen_categories: Counter
    scores: Histogram
    predictions: Counter
    model_info: Gauge
    reloads: Counter
    refusals: Counter
    load_retries: Counter
    alias_skew: Gauge
    behind_alias: Gauge
    store_errors: Counter
    key_refusals: Counter
    feature_drift: Gauge
    score_drift: Gauge
    drift_window_rows: Gauge
    feedback_labels: Counter
    feedback_unmatched: Counter
    served_model_metric: Gauge
    registry_alias_version: Gauge
    feature_freshness: Gauge
    customer_updates: Counter
    customer_update_latency: Histogram
    newest_event: Gauge
    worker_memory: Gauge
    worker_cpu: Counter
    rollout: RolloutMetrics

    @classmethod
    def create(cls) -> ServiceMetrics:
        """Register the metrics on a fresh registry."""
        registry = CollectorRegistry(auto_describe=True)
        return cls(
            registry=registry,
            directory=multiprocess_dir(),
            requests=Counter(
                HTTP_REQUESTS,
                "HTTP requests by route template, method and status class (2xx, 4xx, 5xx).",
                [ROUTE, METHOD, STATUS],
                registry=registry,
            ),
            request_latency=Histogram(
                HTTP_REQUEST_DURATION,
                "HTTP request latency by route template.",
                [ROUTE, METHOD],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            inference_latency=Histogram(
                "model_inference_duration_seconds",
                "Time of the model call alone (predict_proba on the assembled rows).",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            scoring_batch=Histogram(
                "scoring_batch_requests",
                "Scoring requests combined into one scoring call (one lookup, one model call, one update).",
                buckets=(1, 2, 4, 8, 16, 32, 64),
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
            unseen_categories=Counter(
                "unseen_categories_total",
                "Scored transactions with a value outside the declared domain of an open categorical field.",
                ["field"],
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
            refusals=Counter(
                "model_refusals_total",
                "Model versions refused by a check (load, signature, features, feature_service, drift_reference, "
                "warm_up); the previous model, if any, keeps serving.",
                ["reason"],
                registry=registry,
            ),
            load_retries=Counter(
                "model_load_retries_total",
                "Loads of a model version that failed for a transient reason (a store out of reach), retried with "
                "backoff.",
                registry=registry,
            ),
            alias_skew=Gauge(
                "served_model_alias_skew_seconds",
                "How long the served model version has differed from the registry alias' version (0: the same).",
                multiprocess_mode="livemax",
                registry=registry,
            ),
            behind_alias=Gauge(
                "served_model_behind_alias",
                "1 when the served version has differed from the alias' for longer than SERVING_MAX_ALIAS_SKEW_S.",
                multiprocess_mode="livemax",
                registry=registry,
            ),
            store_errors=Counter(
                "feature_store_errors_total",
                "Online feature store lookups that failed.",
                registry=registry,
            ),
            key_refusals=Counter(
                "api_key_refusals_total",
                "Requests refused (401) for a missing or wrong X-API-Key, by route.",
                ["route"],
                registry=registry,
            ),
            # Gauges below: with several workers, the highest live worker's value (each has its own window).
            feature_drift=Gauge(
                "feature_drift_psi",
                "PSI of each model input over the recent window against the training reference; source is 'request' "
                "(from the request alone) or 'stored' (uses online features).",
                ["feature", "source"],
                multiprocess_mode="livemax",
                registry=registry,
            ),
            score_drift=Gauge(
                "prediction_drift_psi",
                "PSI of the fraud scores over the recent window against the scores at training.",
                multiprocess_mode="livemax",
                registry=registry,
            ),
            drift_window_rows=Gauge(
                "drift_window_rows",
                "Scored rows in the drift window (PSI is published from SERVING_DRIFT_MIN_ROWS on).",
                multiprocess_mode="livemax",
                registry=registry,
            ),
            feedback_labels=Counter(
                "feedback_labels_total",
                "Delayed labels matched with a returned score, by model version and outcome (tp, fp, fn, tn).",
                ["model_version", "outcome"],
                registry=registry,
            ),
            feedback_unmatched=Counter(
                "feedback_unmatched_total",
                "Delayed labels whose transaction_id this service does not remember (never scored, or forgotten).",
                registry=registry,
            ),
            served_model_metric=Gauge(
                "served_model_holdout_metric",
                "Holdout metrics of the model being served, from its training run (evaluate stage).",
                ["metric"],
                multiprocess_mode="livemax",
                registry=registry,
            ),
            registry_alias_version=Gauge(
                "registry_alias_version",
                "Model version behind each registry alias (a challenger above the champion was not promoted).",
                ["alias"],
                multiprocess_mode="livemax",
                registry=registry,
            ),
            feature_freshness=Gauge(
                "feature_view_materialized_timestamp_seconds",
                "End of the latest materialization of each feature view into the online store (Unix time).",
                ["feature_view"],
                multiprocess_mode="livemax",
                registry=registry,
            ),
            customer_updates=Counter(
                "customer_feature_updates_total",
                "Scored transactions recorded in their customer's online features, by outcome: counted, "
                "duplicate (a transaction_id already counted: a retry), failed (the store did not take it).",
                ["outcome"],
                registry=registry,
            ),
            customer_update_latency=Histogram(
                "customer_feature_update_duration_seconds",
                "Time to record a scoring call's transactions and write their rows (event log + Feast write).",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            newest_event=Gauge(
                "feature_view_newest_event_timestamp_seconds",
                "Event time of the newest row this service wrote to a feature view updated per transaction.",
                ["feature_view"],
                multiprocess_mode="livemax",
                registry=registry,
            ),
            # Per worker, sampled by the monitoring timer: the standard process collector does not work across
            # worker processes (it would report only the one that answers the scrape).
            worker_memory=Gauge(
                "worker_resident_memory_bytes",
                "Resident memory of the service's worker processes (summed over live workers).",
                multiprocess_mode="livesum",
                registry=registry,
            ),
            worker_cpu=Counter(
                "worker_cpu_seconds_total",
                "CPU time (user + system) of the service's worker processes.",
                registry=registry,
            ),
            rollout=RolloutMetrics.create(registry),
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition: merged over worker processes in multiprocess mode."""
        if self.directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        sweep_dead_workers(self.directory)  # at scrape time: no hook runs when a worker is killed
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class RolloutMetrics:
    """Figures of a running rollout (serving/rollout.py), labelled by ``variant`` (champion, candidate).

    Recorded only while a rollout runs: without one, the champion's path does not touch them. The rollout plan's
    checks (monitoring/rollout-plan.yaml) and the dashboard's rollout row read these.
    """

    rows: Counter
    model_latency: Histogram
    scores: Histogram
    decisions: Counter
    shadow_compared: Counter
    shadow_disagreements: Counter
    shadow_score_difference: Histogram
    shadow_dropped: Counter
    score_psi: Gauge
    info: Gauge
    share: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RolloutMetrics:
        """Register the rollout metrics on ``registry``."""
        return cls(
            rows=Counter(
                "rollout_scored_rows_total",
                "Transactions scored during a rollout, by variant and outcome (ok, error). In shadow the candidate's "
                "rows are those it scored off the response path.",
                ["variant", "outcome"],
                registry=registry,
            ),
            model_latency=Histogram(
                "rollout_model_duration_seconds",
                "Time of one model call during a rollout, by variant. A shadow candidate's calls take the rows of "
                "the requests queued meanwhile together (off the response path).",
                ["variant"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            scores=Histogram(
                "rollout_prediction_score",
                "Fraud probabilities during a rollout, by variant.",
                ["variant"],
                buckets=SCORE_BUCKETS,
                registry=registry,
            ),
            decisions=Counter(
                "rollout_decisions_total",
                "Decisions during a rollout, by variant and decision (fraud, legit).",
                ["variant", "decision"],
                registry=registry,
            ),
            shadow_compared=Counter(
                "rollout_shadow_compared_total",
                "Transactions scored by both champion and candidate in shadow mode.",
                registry=registry,
            ),
            shadow_disagreements=Counter(
                "rollout_shadow_disagreements_total",
                "Shadow-scored transactions on which the candidate's decision differs from the champion's.",
                registry=registry,
            ),
            shadow_score_difference=Histogram(
                "rollout_shadow_score_difference",
                "Absolute difference between candidate and champion fraud probability, per shadow-scored transaction.",
                buckets=SCORE_BUCKETS,
                registry=registry,
            ),
            shadow_dropped=Counter(
                "rollout_shadow_dropped_total",
                "Transactions the candidate did not shadow-score, by reason: queue_full (overload: the champion's "
                "responses never wait), features (the candidate reads other features than the champion).",
                ["reason"],
                registry=registry,
            ),
            score_psi=Gauge(
                "rollout_score_psi",
                "PSI of the candidate's recent scores against the champion's recent scores (0: same distribution).",
                multiprocess_mode="livemax",
                registry=registry,
            ),
            info=Gauge(
                "rollout_info",
                "The rollout record this worker follows: 1 for the current one, 0 for earlier ones.",
                ["candidate_version", "mode", "step", "status"],
                multiprocess_mode="livemax",
                registry=registry,
            ),
            share=Gauge(
                "rollout_candidate_percent",
                "Share of requests (shadow) or customers (canary) the candidate scores in each worker (pid label): "
                "0 without a rollout, and in a worker that has not loaded the candidate yet.",
                multiprocess_mode="liveall",
                registry=registry,
            ),
        )
