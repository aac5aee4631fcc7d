"""Drift, delayed labels and the feedback loop, for real: a service scored with replayed traffic, Prometheus
evaluating the model rules against it, and the monitor flow starting a Prefect retrain run when they fire."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

MODEL_RULES = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus" / "rules" / "model.yml"
WINDOW = 600
DRIFT_ENV = {
    "SERVING_MONITOR_INTERVAL_S": "0.5",
    "SERVING_DRIFT_WINDOW_ROWS": str(WINDOW),
    "SERVING_DRIFT_MIN_ROWS": "300",
}


def request_psi(metrics: Any) -> dict[str, float]:
    return {
        labels["feature"]: value
        for name, labels, value in metrics.samples
        if name == "feature_drift_psi" and labels["source"] == "request"
    }


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def test_drift_gauges_alerts_and_the_retrain_loop(
    trained_project: Any,
    start_service: Any,
    start_prometheus: Any,
    prefect_server: None,
    scrape: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client

    from flows.monitor import monitor
    from flows.retrain import retrain
    from mlops_recipes.monitoring.traffic import live_transactions, recent_transactions, send
    from mlops_recipes.params import DriftParams
    from mlops_recipes.settings import Settings

    service = start_service(trained_project, env=DRIFT_ENV)
    service.wait_ready()
    settings = Settings(project_root=trained_project.root)
    contract = settings.contract()
    recent = recent_transactions(settings, contract)

    # Unshifted replay, with labels: every drift figure stays under the alert threshold.
    calm = send(service.url, live_transactions(recent, DriftParams(), contract, rows=WINDOW, seed=1), labels=True)
    assert calm.failed_requests == 0
    assert calm.labels_matched == WINDOW
    wait_for(lambda: scrape(service).value("drift_window_rows") == WINDOW, timeout=10, what="a full drift window")
    metrics = scrape(service)
    assert set(request_psi(metrics)) == {
        "amount",
        "log_amount",
        "hour_of_day",
        "is_night",
        "channel_online",
        "channel_atm",
    }
    assert max(request_psi(metrics).values()) < 0.1, request_psi(metrics)
    assert metrics.value("prediction_drift_psi") < 0.2
    assert metrics.value("feedback_labels_total") == WINDOW
    assert metrics.value("feedback_labels_total", outcome="tp") + metrics.value(
        "feedback_labels_total", outcome="fn"
    ) == sum(t["is_fraud"] for t in live_transactions(recent, DriftParams(), contract, rows=WINDOW, seed=1))

    prometheus = start_prometheus([MODEL_RULES], service.url.removeprefix("http://"), fire_at_once=True)
    wait_for(lambda: _has_data(prometheus, "fraud:feature_drift_psi:max"), timeout=30, what="Prometheus to scrape")
    time.sleep(3)  # a few evaluations on calm traffic
    assert not {"FraudInputDrift", "FraudScoreDrift"} & prometheus.firing()

    # Shifted: amounts x4, 40 points more online. The window fills with shifted rows; the gauges and the alert react.
    shifted = DriftParams(amount_scale=4.0, online_share_shift=0.4)
    assert send(service.url, live_transactions(recent, shifted, contract, rows=WINDOW, seed=2)).failed_requests == 0
    # A publication may have caught the window half calm, half shifted: wait until both shifted inputs show it.
    wait_for(
        lambda: min(request_psi(scrape(service))[name] for name in ("amount", "channel_online")) > 0.2,
        timeout=10,
        what="the amount and channel PSI to rise",
    )
    psi = request_psi(scrape(service))
    assert psi["channel_online"] > 0.2, psi
    assert psi["hour_of_day"] < 0.1, psi  # what was not shifted stays put
    wait_for(lambda: "FraudInputDrift" in prometheus.firing(), timeout=30, what="FraudInputDrift to fire")

    # The loop: the monitor flow reads the firing alert and starts the retrain deployment, once per cooldown.
    retrain.to_deployment(name="retrain-weekly").apply()
    monkeypatch.setenv("MLOPS_PROMETHEUS_URL", prometheus.url)
    # A year-long cooldown: both calls fall in one period whatever the time of day the test runs at.
    year = 24.0 * 365
    first = monitor(
        project_root=str(trained_project.root), retrain_deployment="retrain/retrain-weekly", cooldown_hours=year
    )
    assert "FraudInputDrift" in first["firing"]
    assert first["flow_run_id"] is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(first["flow_run_id"])
        deployment = client.read_deployment_by_name("retrain/retrain-weekly")
    assert run.deployment_id == deployment.id
    assert "triggered-by-monitor" in run.tags
    assert run.parameters["refresh_data"] is True

    again = monitor(
        project_root=str(trained_project.root), retrain_deployment="retrain/retrain-weekly", cooldown_hours=year
    )
    assert again["flow_run_id"] == first["flow_run_id"]  # the same cooldown period: no second retrain

    monkeypatch.setenv("MLOPS_AUTO_RETRAIN", "false")
    off = monitor(
        project_root=str(trained_project.root), retrain_deployment="retrain/retrain-weekly", cooldown_hours=0.001
    )
    assert "FraudInputDrift" in off["firing"]
    assert off["flow_run_id"] is None


def _has_data(prometheus: Any, expr: str) -> bool:
    answer = prometheus.query(expr)
    return bool(answer and answer["data"]["result"])


def test_feedback_rejects_malformed_labels_and_reports_unknown_ids(scoring_service: Any) -> None:
    url = scoring_service.url
    scored = httpx.post(
        url + "/predict",
        json={"transaction_id": "fb-1", "customer_id": 1, "merchant_id": 1, "amount": 12.5, "channel": "pos"},
        timeout=10,
    )
    assert scored.status_code == 200
    assert scored.json()["transaction_id"] == "fb-1"

    answer = httpx.post(
        url + "/feedback",
        json={"labels": [{"transaction_id": "fb-1", "is_fraud": False}, {"transaction_id": "never", "is_fraud": True}]},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.json() == {"matched": 1, "unmatched": 1, "unmatched_ids": ["never"]}

    for bad in (
        {},
        {"labels": []},
        {"labels": [{"transaction_id": "x"}]},
        {"labels": [{"transaction_id": "has space", "is_fraud": True}]},
        {"labels": [{"transaction_id": "x", "is_fraud": True, "extra": 1}]},
    ):
        response = httpx.post(url + "/feedback", json=bad, timeout=10)
        assert response.status_code == 422, (bad, response.text)
    too_many = {"labels": [{"transaction_id": f"t{i}", "is_fraud": False} for i in range(257)]}
    response = httpx.post(url + "/feedback", json=too_many, timeout=10)
    assert response.status_code == 422
    assert "limit" in response.text
