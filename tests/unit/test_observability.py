"""The observability contract (``mlops_recipes.observability``) is what the service, Prometheus and the library use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops_recipes import observability as obs

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_prometheus_scrape_job_is_the_contract_job() -> None:
    # Every rule and dashboard selects job="fraud-serving": a renamed scrape job would silence them all.
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    jobs = {scrape["job_name"]: scrape for scrape in config["scrape_configs"]}
    assert obs.JOB in jobs
    assert jobs[obs.JOB]["metrics_path"] == obs.METRICS


def test_the_service_serves_every_route_of_the_contract() -> None:
    from serving.app import create_app

    documented = set(create_app().openapi()["paths"])  # no lifespan: the routes exist before a model loads
    assert {*obs.SCORING_ROUTES, obs.FEEDBACK, obs.HEALTH_LIVE, obs.HEALTH_READY} <= documented
    from serving.routes import metrics

    assert [route.path for route in metrics.router.routes] == [obs.METRICS]  # left out of the document


def test_the_service_exports_the_http_metrics_the_slos_read() -> None:
    from serving.metrics import ServiceMetrics

    families = {family.name: family for family in ServiceMetrics.create().registry.collect()}
    requests = families[obs.HTTP_REQUESTS.removesuffix("_total")]
    duration = families[obs.HTTP_REQUEST_DURATION]
    assert requests.type == "counter"
    assert duration.type == "histogram"
    metrics = ServiceMetrics.create()
    metrics.request_latency.labels(**{obs.ROUTE: obs.PREDICT, obs.METHOD: "POST"}).observe(0.01)
    metrics.requests.labels(**{obs.ROUTE: obs.PREDICT, obs.METHOD: "POST", obs.STATUS: obs.status_class(503)}).inc()
    text = metrics.exposition()[0].decode()
    assert f'{obs.HTTP_REQUESTS}{{method="POST",route="/predict",status="{obs.SERVER_ERROR}"}} 1.0' in text
    boundaries = [
        float(line.split('le="')[1].split('"')[0])
        for line in text.splitlines()
        if line.startswith(f"{obs.HTTP_REQUEST_DURATION}_bucket")
    ]
    assert boundaries[:-1] == list(obs.LATENCY_BUCKETS)  # and +Inf


@pytest.mark.parametrize(("status", "label"), [(200, "2xx"), (404, "4xx"), (422, "4xx"), (503, "5xx"), (504, "5xx")])
def test_status_class(status: int, label: str) -> None:
    assert obs.status_class(status) == label
