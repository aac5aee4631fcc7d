"""Fixtures for tests of the running service: a trained project and real uvicorn processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.fixtures import postgres_url, redis_server  # noqa: F401  # fixtures, for the tests here
from support.servers import free_port


class ServiceProcess:
    """`python -m serving` as a user starts it, in a project folder, on a loopback port."""

    def __init__(self, root: Path, env: dict[str, str], *, workers: int = 1, app: str | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"service-{self.port}.log"
        self._log = self.log_path.open("wb")
        # `app` lets a test wrap the real factory (fault injection) while keeping the real launcher.
        command = [sys.executable, "-m", "serving", "--port", str(self.port), "--workers", str(workers)]
        if app is not None:
            command = [sys.executable, "-m", "uvicorn", app, "--factory", "--port", str(self.port), "--no-access-log"]
        self.process = subprocess.Popen(
            command, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_live(self, timeout: float = 180.0) -> float:
        """Seconds until /v2/health/live answers (the timeout allows for a loaded 2-core machine)."""
        return self._wait("/v2/health/live", timeout)

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds until /v2/health/ready answers 200."""
        return self._wait("/v2/health/ready", timeout)

    def _wait(self, path: str, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{path} not 200 within {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        """Everything the process wrote so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server (and its workers)."""
        os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; SIGKILL if it hangs. Returns the exit code."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def trained_project(trained_copy: Callable[[str], Any]) -> Any:
    """A project copy after `dvc repro`: a champion in its MLflow store, features in its online store."""
    return trained_copy("serving")


@pytest.fixture
def start_service(request: pytest.FixtureRequest) -> Iterator[Callable[..., ServiceProcess]]:
    """Start services in a project (``start(project, workers=1, env={...}, app=None)``); all stop at teardown."""
    started: list[ServiceProcess] = []

    def start(
        project: Any, *, workers: int = 1, env: dict[str, str] | None = None, app: str | None = None
    ) -> ServiceProcess:
        service = ServiceProcess(project.root, {**project.env, **(env or {})}, workers=workers, app=app)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


# --- Service tests (test_serving_*.py): isolated services, fault injection, metrics ------------------------------

# fault_apps.py (the service with faults injected through FAULT_DIR) lives here; services get it on PYTHONPATH.
FAULT_APPS_DIR = Path(__file__).resolve().parent


def service_env(project: Any, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The project's environment for a service, less Prometheus directories inherited from the test process.

    ``import feast`` in the test process sets PROMETHEUS_MULTIPROC_DIR (to a temp dir of its own) and project copies
    made afterwards inherit it: services started with the same directory would wipe each other's metrics (the
    launcher empties it at start).
    """
    env = {k: v for k, v in project.env.items() if not k.upper().startswith("PROMETHEUS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULT_APPS_DIR), env.get("PYTHONPATH")]))
    env.update(overrides or {})
    return env


class ModuleService(ServiceProcess):
    """``python -m <module> --port P --workers N``: the launcher, or ``fault_apps`` (the launcher with faults)."""

    def __init__(self, root: Path, env: dict[str, str], *, module: str = "serving", workers: int = 1) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"service-{self.port}.log"
        self._log = self.log_path.open("wb")
        command = [sys.executable, "-m", module, "--port", str(self.port), "--workers", str(workers)]
        self.process = subprocess.Popen(
            command, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )


def launch(
    project: Any,
    metrics_dir: Path | None,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    module: str = "serving",
    app: str | None = None,
) -> ServiceProcess:
    """Start a service in ``project``: ``python -m <module>``, or ``app`` under plain uvicorn (no launcher).

    Launcher runs get ``metrics_dir`` as their own PROMETHEUS_MULTIPROC_DIR; plain uvicorn runs get none, as a
    user starting ``uvicorn serving.app:create_app --factory`` would.
    """
    overrides = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)} if app is None and metrics_dir is not None else {}
    full_env = service_env(project, {**overrides, **(env or {})})
    service = (
        ServiceProcess(project.root, full_env, app=app)
        if app is not None
        else ModuleService(project.root, full_env, module=module, workers=workers)
    )
    service.metrics_dir = Path(full_env["PROMETHEUS_MULTIPROC_DIR"]) if "PROMETHEUS_MULTIPROC_DIR" in full_env else None
    return service


class ServiceStarter:
    """Starts services (see ``launch``), each with its own metrics directory under ``directory``; stops them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[ServiceProcess] = []

    def __call__(
        self,
        project: Any,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        module: str = "serving",
        app: str | None = None,
    ) -> ServiceProcess:
        metrics_dir = self.directory / f"prometheus-{len(self.started)}"
        service = launch(project, metrics_dir, workers=workers, env=env, module=module, app=app)
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        """SIGTERM every service started, then wait for each."""
        for service in self.started:
            service.stop()


@pytest.fixture
def start_isolated_service(tmp_path: Path) -> Iterator[ServiceStarter]:
    """Like ``start_service``, with a metrics directory per service and ``module=`` (e.g. ``fault_apps``)."""
    starter = ServiceStarter(tmp_path)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def start_module_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStarter]:
    """``start_isolated_service`` for services shared by the tests of one module."""
    starter = ServiceStarter(tmp_path_factory.mktemp("module-services"))
    yield starter
    starter.stop_all()


# Limits of the shared service: small enough to test cheaply, large enough for the parity batches. It only reads
# the online store (no per-transaction updates): the tests sharing it score the same transactions several times
# and compare the answers; the updates are tested on services of their own (test_fresh_features.py).
SCORING_SERVICE_ENV = {
    "SERVING_MAX_BATCH": "8",
    "SERVING_MAX_BODY_BYTES": "16384",
    "SERVING_UPDATE_CUSTOMER_FEATURES": "false",
}


@pytest.fixture(scope="session")
def scoring_service(trained_project: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service on the trained project (launcher, one worker, SCORING_SERVICE_ENV) shared by read-only tests.

    Tests that count must compare metrics before and after their own requests: other tests use it too.
    """
    service = launch(trained_project, tmp_path_factory.mktemp("scoring-metrics"), env=SCORING_SERVICE_ENV)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


class Metrics:
    """A parsed ``/metrics`` exposition."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.text = text
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels`` (0 if there are none)."""
        return sum(
            value
            for sample, sample_labels, value in self.samples
            if sample == name and labels.items() <= sample_labels.items()
        )

    def names(self) -> set[str]:
        """Every sample name present."""
        return {name for name, _, _ in self.samples}


@pytest.fixture(scope="session")
def scrape() -> Callable[[ServiceProcess], Metrics]:
    """``scrape(service)``: the service's current metrics."""

    def read(service: ServiceProcess) -> Metrics:
        response = httpx.get(service.url + "/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return Metrics(response.text)

    return read


@pytest.fixture
def unused_port() -> Callable[[], int]:
    """A function returning a free loopback port (for servers a test starts itself)."""
    return free_port


# --- Prefect and Prometheus, for the flows and the monitoring tests -----------------------------------------------


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One ephemeral Prefect API for the whole session (starting it costs ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


class PrometheusProcess:
    """The real Prometheus binary on a loopback port, scraping one target every second."""

    def __init__(
        self, binary: str, rule_files: list[Path], target: str, directory: Path, job: str = "fraud-serving"
    ) -> None:
        config = directory / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(path) for path in rule_files],
                    "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        self.url = f"http://127.0.0.1:{free_port()}"
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def query(self, expr: str) -> dict[str, Any] | None:
        """The API's answer to an instant query, or None while Prometheus is still starting."""
        try:
            response = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5)
        except httpx.TransportError:
            return None
        if response.status_code == 503:  # up, but its storage or rule manager is still starting
            return None
        if response.status_code == 400:
            pytest.fail(f"query does not parse: {expr}: {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def firing(self) -> set[str]:
        """Names of the alerts firing now."""
        try:
            response = httpx.get(self.url + "/api/v1/alerts", timeout=5)
        except httpx.TransportError:
            return set()
        return {a["labels"]["alertname"] for a in response.json()["data"]["alerts"] if a["state"] == "firing"}

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(30)


def rules_without_for(source: Path, directory: Path) -> Path:
    """A copy of a rule file whose alerts fire on the first evaluation (tests cannot wait out ``for: 15m``)."""
    groups = yaml.safe_load(source.read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    copy = directory / f"{source.stem}.nofor.yml"
    copy.write_text(yaml.safe_dump(groups))
    return copy


@pytest.fixture
def start_prometheus(tmp_path: Path, tool_prometheus: str) -> Iterator[Callable[..., PrometheusProcess]]:
    """``start_prometheus(rule_files, "127.0.0.1:port", fire_at_once=False, job=...)``: Prometheus scraping a target.

    ``fire_at_once`` drops the alerts' ``for:`` durations. Every Prometheus started is stopped at teardown.
    """
    started: list[PrometheusProcess] = []

    def start(
        rule_files: list[Path], target: str, *, fire_at_once: bool = False, job: str = "fraud-serving"
    ) -> PrometheusProcess:
        directory = tmp_path / f"prometheus-{len(started)}"
        directory.mkdir()
        if fire_at_once:
            rule_files = [rules_without_for(path, directory) for path in rule_files]
        prometheus = PrometheusProcess(tool_prometheus, rule_files, target, directory, job)
        started.append(prometheus)
        return prometheus

    yield start
    for prometheus in started:
        prometheus.stop()
