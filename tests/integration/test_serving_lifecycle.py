"""The model's life in the running service: hot swap under load, a refused version, no model until the pipeline ran.

Tests that move the ``champion`` alias work on a copy of the trained project (its registry, its Feast stores), so
the shared services keep serving version 1.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

MODEL = "fraud-detector"
FAST_POLL = {"SERVING_POLL_INTERVAL_S": "0.5"}
CLIENTS = 8
MAX_REQUESTS_PER_CLIENT = 2_000


@pytest.fixture
def project_copy(trained_project: Any, tmp_path: Path) -> Any:
    """A copy of the trained project. Its registry points at the original's model artifacts (only read)."""
    root = tmp_path / "project"
    shutil.copytree(trained_project.root, root, ignore=shutil.ignore_patterns("service-*.log"))
    return type(trained_project)(root)


@pytest.fixture
def registry(project_copy: Any) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{project_copy.root / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _wait_for(
    condition: Callable[[], bool], timeout: float, what: str, details: Callable[[], object] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{details()}")
        time.sleep(0.1)


def _transaction(client: int, n: int) -> dict[str, Any]:
    return {"customer_id": 1 + (client * 37 + n) % 300, "merchant_id": 1 + n % 40, "amount": 10.0 + n, "channel": "pos"}


class Load:
    """CLIENTS threads posting /predict back to back until stopped.

    ``seen[i]`` is client i's outcomes, (status, model_version or error), in request start order: a client sends
    one request at a time.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.seen: list[list[tuple[int, str]]] = [[] for _ in range(CLIENTS)]
        self.pool = ThreadPoolExecutor(CLIENTS)
        self.futures = [self.pool.submit(self._client, i) for i in range(CLIENTS)]

    def _client(self, index: int) -> None:
        seen = self.seen[index]
        with httpx.Client(base_url=self.url, timeout=10) as http:
            for n in range(MAX_REQUESTS_PER_CLIENT):
                if self.stop.is_set():
                    break
                try:
                    response = http.post("/predict", json=_transaction(index, n))
                except httpx.HTTPError as error:
                    seen.append((-1, repr(error)))
                    continue
                ok = response.status_code == 200
                seen.append((response.status_code, response.json()["model_version"] if ok else response.text))

    def every_client_saw(self, version: str, times: int) -> bool:
        """Whether each client got ``version`` in at least ``times`` responses so far."""
        return all(sum(v == version for _, v in list(seen)) >= times for seen in self.seen)

    def finish(self) -> list[list[tuple[int, str]]]:
        self.stop.set()
        for future in self.futures:
            future.result(timeout=60)
        self.pool.shutdown()
        return self.seen


@pytest.fixture
def load() -> Iterator[Callable[[str], Load]]:
    started: list[Load] = []

    def start(url: str) -> Load:
        started.append(Load(url))
        return started[-1]

    yield start
    for running in started:
        running.finish()


def _artifacts(registry: Any, version: Any) -> str:
    """Where a version's model files are. Registering a ``models:/<id>`` source again would resolve the id through
    MLflow's global tracking URI, not the client's."""
    return str(registry.get_model_version_download_uri(MODEL, version.version))


def test_hot_swap_under_concurrent_load(
    project_copy: Any, registry: Any, start_isolated_service: Any, load: Any, scrape: Any
) -> None:
    service = start_isolated_service(project_copy, env=FAST_POLL)
    service.wait_ready()
    old = registry.get_model_version_by_alias(MODEL, "champion")

    traffic = load(service.url)

    def last_outcomes() -> object:
        return [seen[-3:] for seen in traffic.seen], service.logs()[-3000:]

    _wait_for(lambda: traffic.every_client_saw(str(old.version), 5), 30, "traffic on the old version", last_outcomes)
    new = registry.create_model_version(MODEL, source=_artifacts(registry, old), run_id=old.run_id, tags=old.tags)
    registry.set_registered_model_alias(MODEL, "champion", new.version)
    _wait_for(lambda: traffic.every_client_saw(str(new.version), 5), 60, "traffic on the new version", last_outcomes)
    per_client = traffic.finish()

    failures = [outcome for seen in per_client for outcome in seen if outcome[0] != 200]
    assert not failures, failures[:5]
    for seen in per_client:
        versions = [version for _, version in seen]
        changes = [(a, b) for a, b in itertools.pairwise(versions) if a != b]
        assert changes == [(str(old.version), str(new.version))], (versions[:3], changes)
    metrics = scrape(service)
    assert metrics.value("model_reloads_total", result="success") == 2  # start-up, then the swap
    assert metrics.value("model_reloads_total", result="failure") == 0
    assert metrics.value("model_info", model_version=str(new.version)) == 1
    assert metrics.value("model_info", model_version=str(old.version)) == 0
    assert metrics.value("predictions_total", model_version=str(new.version)) > 0


def test_a_version_that_cannot_load_is_refused_and_the_old_one_keeps_serving(
    project_copy: Any, registry: Any, start_isolated_service: Any, scrape: Any, tmp_path: Path
) -> None:
    service = start_isolated_service(project_copy, env=FAST_POLL)
    service.wait_ready()
    good = registry.get_model_version_by_alias(MODEL, "champion")
    broken = [
        # Artifacts that do not exist.
        registry.create_model_version(MODEL, source=str(tmp_path / "no-model-here"), tags=good.tags),
        # A loadable model that does not say which feature service it reads.
        registry.create_model_version(MODEL, source=_artifacts(registry, good), run_id=good.run_id),
    ]

    def failures() -> float:
        return float(scrape(service).value("model_reloads_total", result="failure"))

    reasons = [
        f"cannot load models:/{MODEL}/{broken[0].version}",
        f"models:/{MODEL}/{broken[1].version} has no feature_service tag",
    ]

    with httpx.Client(base_url=service.url, timeout=10) as http:
        for version, reason in zip(broken, reasons, strict=True):
            seen = failures()
            registry.set_registered_model_alias(MODEL, "champion", version.version)
            _wait_for(
                lambda seen=seen, reason=reason: reason in service.logs() and failures() > seen,
                30,
                f"version {version.version} to be refused",
            )
            responses = [http.post("/predict", json=_transaction(0, n)) for n in range(5)]
            assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
            assert {r.json()["model_version"] for r in responses} == {str(good.version)}
            assert http.get("/v2/health/ready").status_code == 200

    metrics = scrape(service)
    assert metrics.value("model_reloads_total", result="success") == 1
    assert metrics.value("model_info", model_version=str(good.version)) == 1
    assert metrics.value("http_requests_total", status="5xx") == 0


def test_live_without_a_model_then_ready_by_itself_once_the_pipeline_ran(
    project_factory: Callable[[str, dict[str, Any]], Any], start_isolated_service: Any
) -> None:
    project = project_factory("unserved", {})  # no pipeline run: no registry, no Feast registry, no online store
    service = start_isolated_service(project, env=FAST_POLL)
    service.wait_live()

    with httpx.Client(base_url=service.url, timeout=10) as http:
        ready = http.get("/v2/health/ready")
        predict = http.post("/predict", json=_transaction(0, 0))
        metadata = http.get(f"/v2/models/{MODEL}")

        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert predict.status_code == 503
        assert predict.headers["retry-after"] == "5"
        assert "no model is being served yet" in predict.json()["detail"]
        assert f"{MODEL!r} has no loadable 'champion' version" in predict.json()["detail"]
        assert metadata.status_code == 503

        project.run("dvc", "repro")  # with the service running and polling the registry it shares
        service.wait_ready(timeout=60)
        # At once: the store was warmed up before the model became ready (it used to be after, and this first
        # request paid for opening Feast and timed out with 504).
        scored = http.post("/predict", json=_transaction(0, 0))

    assert scored.status_code == 200, scored.text
    assert scored.json()["model_version"] == "1"
    assert scored.json()["missing_features"] == []
    assert service.process.poll() is None
