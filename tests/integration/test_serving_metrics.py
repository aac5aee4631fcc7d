"""``/metrics`` after real requests: app metrics by route and status class, merged across worker processes.

The launcher sets PROMETHEUS_MULTIPROC_DIR before anything imports ``prometheus_client`` or Feast (which would
point it at a temp dir of its own); app metrics must be there with one worker and with several.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

VALID = {"customer_id": 1, "merchant_id": 1, "amount": 25.0, "channel": "pos"}
APP_METRICS = {
    "http_requests_total",
    "http_request_duration_seconds_count",
    "model_inference_duration_seconds_count",
    "feature_lookup_duration_seconds_count",
    "prediction_score_count",
    "predictions_total",
    "model_info",
    "model_reloads_total",
}


def _counts(metrics: Any) -> dict[str, float]:
    return {
        "predict_2xx": metrics.value("http_requests_total", route="/predict", method="POST", status="2xx"),
        "predict_4xx": metrics.value("http_requests_total", route="/predict", method="POST", status="4xx"),
        "unmatched_4xx": metrics.value("http_requests_total", route="unmatched", status="4xx"),
        "predict_latency": metrics.value("http_request_duration_seconds_count", route="/predict"),
        "inference": metrics.value("model_inference_duration_seconds_count"),
        "lookup": metrics.value("feature_lookup_duration_seconds_count"),
        "scores": metrics.value("prediction_score_count", model_version="1"),
        "predictions": metrics.value("predictions_total", model_version="1"),
    }


def test_requests_show_up_in_the_app_metrics(scoring_service: Any, scrape: Any) -> None:
    before = _counts(scrape(scoring_service))

    with httpx.Client(base_url=scoring_service.url, timeout=10) as http:
        assert all(http.post("/predict", json=VALID).status_code == 200 for _ in range(5))
        assert http.post("/predict/batch", json={"transactions": [VALID] * 3}).status_code == 200
        assert http.post("/predict", json={**VALID, "amount": -1}).status_code == 422
        assert http.get("/no/such/route").status_code == 404
    metrics = scrape(scoring_service)
    after = _counts(metrics)

    assert {k: after[k] - before[k] for k in after} == {
        "predict_2xx": 5,
        "predict_4xx": 1,
        "unmatched_4xx": 1,  # no route template: unknown paths never become label values
        "predict_latency": 6,
        "inference": 6,  # one model call per request, batch included
        "lookup": 6,
        "scores": 8,  # one per transaction
        "predictions": 8,
    }
    assert metrics.names() >= APP_METRICS
    assert metrics.value("model_info", model_name="fraud-detector", model_version="1") == 1
    assert scoring_service.metrics_dir is not None
    assert list(scoring_service.metrics_dir.glob("*.db")), "the launcher's multiprocess directory holds no values"


def test_two_workers_merge_into_one_count(
    trained_project: Any, scoring_service: Any, start_isolated_service: Any, scrape: Any, tmp_path: Path
) -> None:
    # Stale values of another run in the configured directory: the launcher must start from an empty one.
    metrics_dir = tmp_path / "reused-metrics-dir"
    shutil.copytree(scoring_service.metrics_dir, metrics_dir)
    assert list(metrics_dir.glob("counter_*.db"))
    service = start_isolated_service(trained_project, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    service.wait_ready()
    deadline = time.monotonic() + 60
    # Ready is one worker; wait for both: each counts its own start-up load.
    while (loads := scrape(service).value("model_reloads_total", result="success")) < 2:
        assert time.monotonic() < deadline, service.logs()
        time.sleep(0.2)
    assert loads == 2
    requests = 24

    def post(n: int) -> int:  # a new connection each time, so both workers take some
        return httpx.post(service.url + "/predict", json={**VALID, "amount": 1.0 + n}, timeout=10).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(post, range(requests)))

    assert statuses == [200] * requests
    metrics = scrape(service)
    assert metrics.value("http_requests_total", route="/predict", method="POST", status="2xx") == requests
    assert metrics.value("predictions_total", model_version="1") == requests
    assert metrics.value("prediction_score_count", model_version="1") == requests
    assert metrics.value("model_inference_duration_seconds_count") == requests
    assert metrics.value("model_info", model_version="1") == 1
    assert metrics.names() >= APP_METRICS
    assert service.stop() == 0


def test_a_killed_workers_gauges_leave_the_export(
    trained_project: Any, start_isolated_service: Any, scrape: Any
) -> None:
    import psutil

    service = start_isolated_service(trained_project, workers=2, env={"SERVING_MONITOR_INTERVAL_S": "0.5"})
    service.wait_ready(timeout=240)  # two workers import and load at once: slow on a busy machine

    def workers() -> list[Any]:
        found = []
        for child in psutil.Process(service.process.pid).children():
            try:
                if "spawn_main" in " ".join(child.cmdline()):  # not multiprocessing's resource tracker
                    found.append(child)
            except psutil.Error:  # exited meanwhile, or a zombie not reaped yet
                continue
        return found

    def exported_matches_live_workers() -> bool:
        # worker_resident_memory_bytes sums the live workers' last samples: with a dead worker's file still merged
        # it would hold a third worker's memory on top of the two that run.
        live = workers()
        if len(live) != 2:
            return False
        try:
            resident = sum(worker.memory_info().rss for worker in live)
        except psutil.Error:
            return False
        return abs(scrape(service).value("worker_resident_memory_bytes") - resident) < 0.2 * resident

    def wait(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 240
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{service.logs()[-3000:]}"
            time.sleep(0.5)

    wait(lambda: scrape(service).value("model_reloads_total", result="success") == 2, "both workers")
    wait(exported_matches_live_workers, "the gauges of both workers")
    victim = workers()[0].pid
    assert service.metrics_dir is not None
    assert list(service.metrics_dir.glob(f"gauge_live*_{victim}.db"))
    requests_before = scrape(service).value("http_requests_total")

    psutil.Process(victim).kill()  # SIGKILL: no exit hook runs; the supervisor starts a replacement

    wait(lambda: victim not in {worker.pid for worker in workers()}, "the replacement worker")
    wait(exported_matches_live_workers, "the export to hold the live workers only")
    assert not list(service.metrics_dir.glob(f"gauge_live*_{victim}.db"))
    assert list(service.metrics_dir.glob(f"counter_{victim}.db")), "counters of a dead worker must keep their totals"
    assert scrape(service).value("http_requests_total") >= requests_before
    assert scrape(service).value("model_info", model_version="1") == 1
