"""The scoring service's observability contract: what it exports and on which routes, in one place.

The service (``serving.metrics``, its routers and middleware) exports these names; the SLO generator
(:mod:`mlops_recipes.monitoring.slo`), the alert rules' tests, the traffic tool and the Prometheus scrape
configuration (``monitoring/prometheus/prometheus.yml``, checked by a unit test) read them from here, so that a
renamed metric, label or route is one edit and a mismatch fails a test instead of silencing an alert. Plain
constants: importing this module has no side effect and pulls in nothing.
"""

from __future__ import annotations

# --- Prometheus ---------------------------------------------------------------------------------------------
# The scrape job of the service: every rule and dashboard selects ``job="fraud-serving"``.
JOB = "fraud-serving"

# --- routes (FastAPI route templates: the ``route`` label of the HTTP metrics) -----------------------------
PREDICT = "/predict"
PREDICT_BATCH = "/predict/batch"
FEEDBACK = "/feedback"
METRICS = "/metrics"
PROTOCOL_PREFIX = "/v2"  # the Open Inference Protocol (KServe v2) routes
HEALTH_LIVE = f"{PROTOCOL_PREFIX}/health/live"
HEALTH_READY = f"{PROTOCOL_PREFIX}/health/ready"
INFER = f"{PROTOCOL_PREFIX}/models/{{model_name}}/infer"
INFER_VERSION = f"{PROTOCOL_PREFIX}/models/{{model_name}}/versions/{{model_version}}/infer"
# Routes that score (the SLOs cover them) and routes polled by machines (their successes are not access-logged).
SCORING_ROUTES = (PREDICT, PREDICT_BATCH, INFER, INFER_VERSION)
PROBE_ROUTES = frozenset({METRICS, HEALTH_LIVE, HEALTH_READY})
UNMATCHED_ROUTE = "unmatched"  # the route label of a request no route matched (never the raw path: cardinality)

# --- HTTP metrics (what the SLIs are computed from) ----------------------------------------------------------
HTTP_REQUESTS = "http_requests_total"
HTTP_REQUEST_DURATION = "http_request_duration_seconds"
ROUTE, METHOD, STATUS = "route", "method", "status"  # label names; STATUS holds the class: 2xx, 4xx, 5xx
SERVER_ERROR = "5xx"

# --- histogram buckets ----------------------------------------------------------------------------------------
# Sub-millisecond resolution at the bottom: a model call and an online lookup each take well under 1 ms. A latency
# SLO's threshold must be one of these boundaries (the SLO generator checks it).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def status_class(status: int) -> str:
    """The ``status`` label of an HTTP status code: ``2xx``, ``4xx``, ``5xx``."""
    return f"{status // 100}xx"
