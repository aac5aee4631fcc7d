"""The stream scorer's own metrics, on the registry of the scoring metrics it shares with the API.

Scoring itself records what ``/predict`` records (:class:`serving.metrics.ServiceMetrics`: model calls, scores,
decisions, customer updates); these say how the stream flows. Labels are low in cardinality: outcome, reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Event time to decision: milliseconds when the scorer keeps up, minutes when it has a backlog.
STREAM_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


@dataclass(frozen=True)
class StreamMetrics:
    """Every metric the stream scorer adds."""

    messages: Counter
    decision_latency: Histogram
    dead_letters: Counter
    redeliveries: Counter
    lag: Gauge
    pending: Gauge
    redis_errors: Counter
    scoring_retries: Counter
    in_flight: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> StreamMetrics:
        """Register the metrics on ``registry``."""
        return cls(
            messages=Counter(
                "stream_messages_total",
                "Messages handled, by outcome: decided (a decision written), duplicate (its transaction was already "
                "decided: a redelivery or a second publication), dead_letter.",
                ["outcome"],
                registry=registry,
            ),
            decision_latency=Histogram(
                "stream_event_to_decision_seconds",
                "From the transaction's event time (or the message's append time) to its decision being written.",
                buckets=STREAM_LATENCY_BUCKETS,
                registry=registry,
            ),
            dead_letters=Counter(
                "stream_dead_letters_total",
                "Messages moved to the dead-letter stream, by reason: schema (cannot be scored), deliveries "
                "(delivered more than STREAM_MAX_DELIVERIES times), scoring (the model call failed on it alone).",
                ["reason"],
                registry=registry,
            ),
            redeliveries=Counter(
                "stream_redeliveries_total",
                "Messages claimed after STREAM_CLAIM_IDLE_MS pending (their consumer died or stalled).",
                registry=registry,
            ),
            lag=Gauge(
                "stream_consumer_lag",
                "Messages of the input stream not yet delivered to the consumer group.",
                ["stream", "group"],
                registry=registry,
            ),
            pending=Gauge(
                "stream_pending_messages",
                "Messages delivered to the group and not yet acknowledged (being scored, or held by a dead consumer).",
                ["stream", "group"],
                registry=registry,
            ),
            redis_errors=Counter(
                "stream_redis_errors_total",
                "Stream operations that failed because Redis was out of reach; each is retried with backoff.",
                registry=registry,
            ),
            scoring_retries=Counter(
                "stream_scoring_retries_total",
                "Batches scored again after a transient failure (no model yet, online store down), by reason.",
                ["reason"],
                registry=registry,
            ),
            in_flight=Gauge(
                "stream_in_flight_messages",
                "Messages this scorer holds (read, not yet acknowledged); at most STREAM_BATCH_SIZE.",
                registry=registry,
            ),
        )
