"""Faults around the service: the online store goes down and comes back, scoring is slow, SIGTERM mid-request.

Faults are injected by ``fault_apps`` (flag files in FAULT_DIR) into the Feast store's online read only; the
rest is the real service. The module's shared service runs under plain uvicorn, without the launcher: its
metrics must still appear although Feast, imported after ``prometheus_client``, points
PROMETHEUS_MULTIPROC_DIR at a directory of its own.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

VALID = {"customer_id": 1, "merchant_id": 1, "amount": 25.0, "channel": "pos"}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def faulty_service(trained_project: Any, start_module_service: Any, faults: Path) -> Any:
    service = start_module_service(
        trained_project,
        app="fault_apps:create_app",
        env={"FAULT_DIR": str(faults), "SERVING_REQUEST_TIMEOUT_S": "1.0"},
    )
    service.wait_ready()
    return service


@pytest.fixture
def client(faulty_service: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faulty_service.url, timeout=10) as http:
        yield http


def test_online_store_down_is_503_and_recovers_by_itself(
    client: httpx.Client, faulty_service: Any, faults: Path, scrape: Any
) -> None:
    before = scrape(faulty_service)
    (faults / "store_down").touch()
    try:
        down = [client.post("/predict", json=VALID) for _ in range(3)]
        down_batch = client.post("/predict/batch", json={"transactions": [VALID, VALID]})
        ready_while_down = client.get("/v2/health/ready")
    finally:
        (faults / "store_down").unlink()
    back = client.post("/predict", json=VALID)

    for response in [*down, down_batch]:
        assert response.status_code == 503, response.text
        # What is wrong, for the client; the driver's message (paths, hosts) stays in the log.
        assert response.json()["detail"] == "online feature store unavailable", response.text
        assert "fault injected" not in response.text
        assert response.headers["retry-after"] == "1"
    assert ready_while_down.status_code == 200  # the model is loaded; only lookups fail
    assert back.status_code == 200, back.text
    after = scrape(faulty_service)
    assert after.value("feature_store_errors_total") == before.value("feature_store_errors_total") + 4
    assert after.value("http_requests_total", route="/predict", status="5xx") == (
        before.value("http_requests_total", route="/predict", status="5xx") + 3
    )
    assert "online feature store unavailable: OperationalError: unable to open database file" in faulty_service.logs()


def test_scoring_slower_than_the_timeout_is_504(client: httpx.Client, faults: Path) -> None:
    (faults / "delay").write_text("3")
    try:
        started = time.monotonic()
        slow = client.post("/predict", json=VALID)
        waited = time.monotonic() - started
    finally:
        (faults / "delay").unlink()
    fast = client.post("/predict", json=VALID)  # while the abandoned lookup still sleeps in its thread

    assert slow.status_code == 504, slow.text
    assert slow.json() == {"detail": "scoring took longer than 1.0 s"}
    assert waited < 2.5
    assert fast.status_code == 200, fast.text


def test_metrics_appear_without_the_launcher(client: httpx.Client, faulty_service: Any, scrape: Any) -> None:
    assert client.post("/predict", json=VALID).status_code == 200

    metrics = scrape(faulty_service)

    assert metrics.value("http_requests_total", route="/predict", status="2xx") >= 1
    assert metrics.value("model_inference_duration_seconds_count") >= 1
    assert metrics.value("model_info", model_version="1") == 1


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=0.5)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:  # accepted before the listener closed, then dropped: ask again
        return False
    return False


def test_sigterm_lets_the_request_in_flight_finish(
    trained_project: Any, start_isolated_service: Any, tmp_path: Path
) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    service = start_isolated_service(  # the real launcher (python -m serving) with the faults in place
        trained_project, module="fault_apps", env={"FAULT_DIR": str(faults), "SERVING_REQUEST_TIMEOUT_S": "10"}
    )
    service.wait_ready()
    (faults / "delay").write_text("2")

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(httpx.post, service.url + "/predict", json=VALID, timeout=30)
        deadline = time.monotonic() + 10
        while not (faults / "in_flight").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (faults / "in_flight").exists(), service.logs()
        service.signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.8  # well within the 2 s the request takes
        while not _refused(service.url + "/v2/health/live") and time.monotonic() < deadline:
            time.sleep(0.05)
        refused_while_in_flight = _refused(service.url + "/v2/health/live") and not in_flight.done()
        response = in_flight.result(timeout=30)

    assert refused_while_in_flight, service.logs()
    assert response.status_code == 200, response.text
    assert service.process.wait(30) == 0, service.logs()
    assert "Finished server process" in service.logs()
