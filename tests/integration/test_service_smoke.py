"""The service as `make serve` starts it: ready with the champion, scores a transaction, exports metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_service_scores_with_the_champion_and_counts_it(trained_project: Any, start_service: Any) -> None:
    service = start_service(trained_project)
    service.wait_ready()

    response = httpx.post(
        service.url + "/predict",
        json={"customer_id": 1, "merchant_id": 1, "amount": 25.0, "channel": "pos"},
        timeout=10,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1"
    assert 0.0 <= body["fraud_probability"] <= 1.0
    metrics = httpx.get(service.url + "/metrics", timeout=10).text
    assert 'http_requests_total{method="POST",route="/predict",status="2xx"} 1.0' in metrics
    assert 'model_info{feature_service="fraud_model_v1",model_name="fraud-detector",model_version="1"} 1.0' in metrics
