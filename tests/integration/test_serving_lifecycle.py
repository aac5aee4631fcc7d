"""The model's life in the running service: hot swap under load, a refused version, no model until the pipeline ran.

Tests that move the ``champion`` alias work on a copy of the trained project (its registry, its Feast stores), so
the shared services keep serving version 1.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.predict_load import PredictLoad

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


@pytest.fixture
def load() -> Iterator[Callable[[str], PredictLoad]]:
    """CLIENTS clients posting varied transactions (up to MAX_REQUESTS_PER_CLIENT each), stopped at teardown."""
    started: list[PredictLoad] = []

    def start(url: str) -> PredictLoad:
        started.append(PredictLoad(url, _transaction, clients=CLIENTS, max_requests=MAX_REQUESTS_PER_CLIENT))
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

    _wait_for(lambda: traffic.saw(str(old.version), 5), 30, "traffic on the old version", last_outcomes)
    new = registry.create_model_version(MODEL, source=_artifacts(registry, old), run_id=old.run_id, tags=old.tags)
    registry.set_registered_model_alias(MODEL, "champion", new.version)
    _wait_for(lambda: traffic.saw(str(new.version), 5), 60, "traffic on the new version", last_outcomes)
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


# --- Refusals and faults: versions that fail a check, a registry out of reach (``fault_apps`` flag files) ---------


@pytest.fixture
def faults(tmp_path: Path) -> Path:
    directory = tmp_path / "faults"
    directory.mkdir()
    return directory


def _fault_service(project: Any, start: Any, faults: Path, **env: str) -> Any:
    return start(project, module="fault_apps", env={**FAST_POLL, "FAULT_DIR": str(faults), **env})


def _mismatched_reference_run(registry: Any, good: Any, tmp_path: Path) -> str:
    """A run whose drift reference lacks one of the model's inputs (what an older train stage could log)."""
    from mlops_recipes.core.drift import REFERENCE_ARTIFACT

    reference = registry.download_artifacts(good.run_id, REFERENCE_ARTIFACT, str(tmp_path))
    data = json.loads(Path(reference).read_text())
    data["features"].pop(sorted(data["features"])[0])
    experiment = registry.create_experiment("faults", artifact_location=(tmp_path / "artifacts").as_uri())
    run = registry.create_run(experiment)
    registry.log_dict(run.info.run_id, data, REFERENCE_ARTIFACT)
    registry.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def test_versions_failing_a_check_are_refused_counted_and_the_old_one_keeps_serving(
    project_copy: Any, registry: Any, start_isolated_service: Any, scrape: Any, faults: Path, tmp_path: Path
) -> None:
    service = _fault_service(project_copy, start_isolated_service, faults)
    service.wait_ready()
    good = registry.get_model_version_by_alias(MODEL, "champion")
    source = _artifacts(registry, good)
    raising = registry.create_model_version(MODEL, source=source, run_id=good.run_id, tags=good.tags)
    (faults / "predict_fails").write_text(str(raising.version))
    cases = [
        (raising, "warm_up", "failed its warm-up prediction: RuntimeError"),
        (
            registry.create_model_version(
                MODEL, source=source, run_id=good.run_id, tags={**good.tags, "feature_service": "no_such_service"}
            ),
            "feature_service",
            "names 'no_such_service', which no feature view declares",
        ),
        (
            registry.create_model_version(
                MODEL, source=source, run_id=_mismatched_reference_run(registry, good, tmp_path), tags=good.tags
            ),
            "drift_reference",
            "has a drift reference that does not match its signature",
        ),
    ]

    with httpx.Client(base_url=service.url, timeout=10) as http:
        for version, reason, message in cases:
            registry.set_registered_model_alias(MODEL, "champion", version.version)
            _wait_for(
                lambda reason=reason: scrape(service).value("model_refusals_total", reason=reason) == 1,
                60,
                f"version {version.version} to be refused ({reason})",
                service.logs,
            )
            assert message in service.logs()
            responses = [http.post("/predict", json=_transaction(0, n)) for n in range(5)]
            assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
            assert {r.json()["model_version"] for r in responses} == {str(good.version)}
            assert http.get("/v2/health/ready").status_code == 200

    time.sleep(1.5)  # three more polls: a refused version is not loaded again while the alias stays on it
    metrics = scrape(service)
    assert metrics.value("model_refusals_total") == 3
    assert metrics.value("model_reloads_total", result="failure") == 3
    assert metrics.value("model_reloads_total", result="success") == 1
    assert metrics.value("model_info", model_version=str(good.version)) == 1
    assert metrics.value("http_requests_total", status="5xx") == 0


def test_a_refused_champion_at_start_leaves_the_process_live_until_a_good_version_arrives(
    project_copy: Any, registry: Any, start_isolated_service: Any, scrape: Any, faults: Path
) -> None:
    good = registry.get_model_version_by_alias(MODEL, "champion")
    (faults / "predict_fails").write_text(str(good.version))  # its warm-up raises: it used to exit the process

    service = _fault_service(project_copy, start_isolated_service, faults)
    service.wait_live()
    _wait_for(
        lambda: scrape(service).value("model_refusals_total", reason="warm_up") == 1, 60, "the refusal", service.logs
    )
    with httpx.Client(base_url=service.url, timeout=10) as http:
        assert http.get("/v2/health/ready").status_code == 503
        assert http.post("/predict", json=_transaction(0, 0)).status_code == 503

        fixed = registry.create_model_version(
            MODEL, source=_artifacts(registry, good), run_id=good.run_id, tags=good.tags
        )
        registry.set_registered_model_alias(MODEL, "champion", fixed.version)
        service.wait_ready(timeout=60)
        scored = http.post("/predict", json=_transaction(0, 0))

    assert scored.status_code == 200, scored.text
    assert scored.json()["model_version"] == str(fixed.version)
    assert service.process.poll() is None


def test_registry_out_of_reach_mid_run_keeps_serving_and_transient_load_errors_are_retried(
    project_copy: Any, registry: Any, start_isolated_service: Any, scrape: Any, faults: Path
) -> None:
    service = _fault_service(
        project_copy, start_isolated_service, faults, SERVING_LOAD_RETRY_BASE_S="0.2", SERVING_MAX_ALIAS_SKEW_S="1"
    )
    service.wait_ready()
    good = registry.get_model_version_by_alias(MODEL, "champion")
    new = registry.create_model_version(MODEL, source=_artifacts(registry, good), run_id=good.run_id, tags=good.tags)

    with httpx.Client(base_url=service.url, timeout=10) as http:
        (faults / "registry_down").touch()
        registry.set_registered_model_alias(MODEL, "champion", new.version)  # the service cannot see it
        _wait_for(lambda: "cannot reach the model registry" in service.logs(), 30, "a failed poll", service.logs)
        while_down = [http.post("/predict", json=_transaction(0, n)) for n in range(5)]
        assert [r.status_code for r in while_down] == [200] * 5, [r.text for r in while_down]
        assert {r.json()["model_version"] for r in while_down} == {str(good.version)}

        # The registry answers again, but reading the version's record still fails: retried, never refused.
        (faults / "load_down").touch()
        (faults / "registry_down").unlink()
        _wait_for(
            lambda: scrape(service).value("model_load_retries_total") >= 3, 60, "retries with backoff", service.logs
        )
        _wait_for(lambda: scrape(service).value("served_model_behind_alias") == 1, 30, "the skew to be exported")
        assert scrape(service).value("model_refusals_total") == 0
        assert http.post("/predict", json=_transaction(0, 0)).json()["model_version"] == str(good.version)

        (faults / "load_down").unlink()
        _wait_for(
            lambda: http.post("/predict", json=_transaction(0, 0)).json()["model_version"] == str(new.version),
            60,
            "the new version once loading works",
            service.logs,
        )

    metrics = scrape(service)
    assert metrics.value("model_refusals_total") == 0
    assert metrics.value("served_model_behind_alias") == 0
    assert metrics.value("served_model_alias_skew_seconds") == 0
    assert metrics.value("http_requests_total", status="5xx") == 0


def test_start_with_the_tracking_server_out_of_reach_is_not_held_by_client_retries(
    project_copy: Any, start_isolated_service: Any, unused_port: Any
) -> None:
    # Nothing listens there: MLflow's default client retries (7, backoff factor 2) would hold start-up ~4 minutes.
    service = start_isolated_service(
        project_copy, env={**FAST_POLL, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{unused_port()}"}
    )

    service.wait_live(timeout=90)

    assert httpx.get(service.url + "/v2/health/ready", timeout=10).status_code == 503
    assert service.process.poll() is None
