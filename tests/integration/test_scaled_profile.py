"""The scaled profile, by configuration only: Redis online store, Feast registry on Postgres, MLflow server.

Everything is real and on loopback: a fresh Postgres database per run for the Feast SQL registry and another
for the MLflow backend store, a private ``redis-server`` on a free port, and ``mlflow server`` proxying artifacts
into a temporary folder. The project copy, its pipeline and the service are the same as in the embedded
profile; only environment variables differ.

PostgreSQL and Redis come from the locked environment (``tests/support/servers.py``: the session fixtures
``postgres`` and ``redis_server`` in ``conftest.py``); no server of the machine is used.
``MLOPS_TEST_POSTGRES_URL`` (a role allowed to create databases) points the tests at another PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from support.servers import PostgresServer, RedisServer, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
MODEL_NAME = "fraud-detector"
PROJECT = "fraud_detection"  # the Feast project of feature_repo/
SCALED_REDIS_DB = 1  # the scaled project's logical database on the session's Redis server


class PostgresAdmin:
    """Statements on the test server and URLs of its databases."""

    def __init__(self, url: str) -> None:
        self.url = url

    def database_url(self, name: str, *, driver: str = "postgresql") -> str:
        """The server's URL pointed at database ``name`` (and the SQLAlchemy ``driver`` scheme)."""
        base, _, _ = self.url.partition("://")[2].rpartition("/")
        return f"{driver}://{base}/{name}"

    def run(self, sql: str, *, database: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit: CREATE/DROP DATABASE cannot run in a transaction)."""
        import psycopg

        url = self.database_url(database) if database else self.url
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def pg(postgres_url: str) -> PostgresAdmin:
    return PostgresAdmin(postgres_url)


@pytest.fixture(scope="module")
def make_database(pg: PostgresAdmin) -> Iterator[Callable[[str], str]]:
    """Create uniquely named databases (``mlops_test_<purpose>_<random>``); all are dropped at teardown."""
    created: list[str] = []

    def make(purpose: str) -> str:
        name = f"mlops_test_{purpose}_{secrets.token_hex(4)}"
        pg.run(f'CREATE DATABASE "{name}"')
        created.append(name)
        return name

    yield make
    for name in created:
        pg.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class MlflowServer:
    """``mlflow server`` with a Postgres backend store, proxying artifacts into a local folder."""

    def __init__(self, backend_store_uri: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = workdir / "artifacts"
        self.log_path = workdir / "mlflow-server.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(BIN_DIR / "mlflow"),
                "server",
                "--backend-store-uri",
                backend_store_uri,
                "--serve-artifacts",
                "--artifacts-destination",
                str(self.artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                # The allowed hosts replace MLflow's defaults and are compared with the whole Host header,
                # port included: "127.0.0.1" alone gets every API call a 403 "Invalid Host header".
                "--allowed-hosts",
                f"127.0.0.1:{self.port},localhost:{self.port}",
            ],
            cwd=workdir,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
                # MLflow 3 starts a job runner with seven huey consumers by default (GenAI jobs, unused here):
                # without it the server is ready in ~9 s instead of ~26 s, with 0.5 GB instead of 1.6 GB.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the REST API answers (``/health`` alone is exempt from the Host header check)."""
        deadline = time.monotonic() + timeout
        probe = f"{self.url}/api/2.0/mlflow/experiments/search?max_results=1"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.process.returncode}:\n{self.logs()}", pytrace=False)
            try:
                response = httpx.get(probe, timeout=2.0)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.status_code == 200:
                return
            pytest.fail(f"mlflow server answers {response.status_code}: {response.text}\n{self.logs()}")
        pytest.fail(f"mlflow server not ready within {timeout} s:\n{self.logs()}", pytrace=False)

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: its stores are thrown away anyway."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def mlflow_database(make_database: Callable[[str], str]) -> str:
    return make_database("mlflow")


@pytest.fixture(scope="module")
def mlflow_server(
    pg: PostgresAdmin, mlflow_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """Started here, waited for by whoever needs it: its start-up overlaps the first pipeline stages."""
    backend = pg.database_url(mlflow_database, driver="postgresql+psycopg")
    server = MlflowServer(backend, tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def feast_database(make_database: Callable[[str], str]) -> str:
    return make_database("feast")


@pytest.fixture(scope="module")
def scaled_env(
    pg: PostgresAdmin, feast_database: str, redis_server: RedisServer, mlflow_server: MlflowServer
) -> dict[str, str]:
    """The scaled profile: what a deployment sets, and nothing else."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "FEAST_CONFIG": "feature_store.scaled.yaml",
        # psycopg 3 is the driver Feast installs (and SQLAlchemy 2.1's default); +psycopg2 is not installed.
        "FEAST_REGISTRY_URL": pg.database_url(feast_database, driver="postgresql+psycopg"),
        # Feast's format: host:port[,key=value...], no redis:// scheme. A logical database of its own: the server is
        # the session's, shared with other modules (the stream tests' keys live in database 0).
        "FEAST_REDIS_CONNECTION": f"127.0.0.1:{redis_server.port},db={SCALED_REDIS_DB}",
    }


@pytest.fixture(scope="module")
def scaled_project(
    project_factory: Callable[[str, dict[str, Any]], Any], scaled_env: dict[str, str], mlflow_server: MlflowServer
) -> Any:
    """A project copy after `dvc repro` in the scaled profile."""
    project = project_factory("scaled", {})
    project.env.update(scaled_env)
    # The stages up to `features` need no MLflow: run them while the server is still starting.
    project.run("dvc", "repro", "features")
    mlflow_server.wait_ready()
    project.run("dvc", "repro")
    return project


def test_champion_and_its_artifacts_are_on_the_tracking_server(
    scaled_project: Any, mlflow_server: MlflowServer, mlflow_database: str, pg: PostgresAdmin
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    train_run = json.loads((scaled_project.root / "artifacts" / "train_run.json").read_text())

    assert str(champion.version) == "1"
    assert champion.run_id == train_run["run_id"]
    assert champion.tags["feature_service"] == "fraud_model_v1"
    # The artifacts went through the server's proxy into its destination, not to a path of the client.
    logged = client.get_logged_model(train_run["model_id"])
    assert logged.artifact_location.startswith("mlflow-artifacts:"), logged.artifact_location
    model_files = {p.name for p in mlflow_server.artifacts.rglob("*") if train_run["model_id"] in p.parts}
    assert {"MLmodel", "model.skops"} <= model_files
    # The server's backend store is the Postgres database, and nothing fell back to the embedded store.
    assert pg.run("SELECT name FROM registered_models", database=mlflow_database) == [(MODEL_NAME,)]
    assert not (scaled_project.root / "mlflow.db").exists()
    assert not (scaled_project.root / "mlruns").exists()


def test_features_are_in_redis_and_the_registry_in_postgres(
    scaled_project: Any, redis_server: RedisServer, feast_database: str, pg: PostgresAdmin
) -> None:
    tables = scaled_project.root / "data" / "features"
    customers = pd.read_parquet(tables / "customer_stats.parquet", columns=["customer_id"])["customer_id"]
    merchants = pd.read_parquet(tables / "merchant_stats.parquet", columns=["merchant_id"])["merchant_id"]

    # One hash per entity key (Feast suffixes each key with the project), the latest row of every entity; the
    # customer event log's keys (mlops:<project>:customer:...) sit beside them.
    keys = [k for k in redis_server.client(db=SCALED_REDIS_DB).scan_iter(count=1000) if not k.startswith(b"mlops:")]
    assert len(keys) == customers.nunique() + merchants.nunique()
    assert all(key.endswith(PROJECT.encode()) for key in keys)
    registered = pg.run(
        f"SELECT feature_view_name FROM feature_views WHERE project_id = '{PROJECT}' ORDER BY 1",  # noqa: S608
        database=feast_database,
    )
    assert registered == [("customer_stats",), ("merchant_stats",)]
    services = pg.run("SELECT feature_service_name FROM feature_services", database=feast_database)
    assert services == [("fraud_model_v1",)]
    # No embedded store was written next to the project.
    assert not (scaled_project.root / "data" / "feast").exists()


def known_transaction(project: Any) -> dict[str, Any]:
    """The customer the features stage read back online, at a merchant with a row inside its 2-day TTL.

    The time is fixed so that the same stored features give the same score.
    """
    report = json.loads((project.root / "reports" / "features.json").read_text())
    merchants = pd.read_parquet(project.root / "data" / "features" / "merchant_stats.parquet")
    merchant = int(merchants.sort_values(["event_timestamp", "merchant_id"]).iloc[-1]["merchant_id"])
    return {
        "customer_id": report["online_check"]["customer_id"],
        "merchant_id": merchant,
        "amount": 42.0,
        "channel": "online",
        "event_timestamp": dt.datetime.now(dt.UTC).isoformat(),
    }


def test_service_scores_and_survives_the_online_store_going_down(
    scaled_project: Any, scaled_env: dict[str, str], redis_server: RedisServer, start_service: Any
) -> None:
    from mlops_recipes.core.request_features import STORED_FEATURES

    # A metrics directory of its own: one inherited from a test process that imported Feast may be shared.
    metrics_dir = str(scaled_project.root / "prometheus")
    # Read-only: the same transaction is scored before and after the outage and must get the same score.
    service = start_service(
        scaled_project,
        env={**scaled_env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "SERVING_UPDATE_CUSTOMER_FEATURES": "false"},
    )
    service.wait_ready()
    transaction = known_transaction(scaled_project)

    def predict() -> httpx.Response:
        return httpx.post(service.url + "/predict", json=transaction, timeout=10)

    scored = predict()
    assert scored.status_code == 200, scored.text
    assert scored.json()["model_version"] == "1"
    assert scored.json()["missing_features"] == []

    # Redis crashes: a 503 naming the store, not a 500, nor a 504 (SERVING_REQUEST_TIMEOUT_S, 2 s) as when
    # redis-py retried with backoff for ~10 s (the scaled profile's connection_string turns that off).
    redis_server.kill()
    down = predict()
    assert down.status_code == 503, down.text
    assert down.headers["retry-after"] == "1"
    # The body says what is wrong; where (host:port) and the driver's message are for the log only.
    assert down.json()["detail"] == "online feature store unavailable", down.text
    assert str(redis_server.port) not in down.text
    assert "ConnectionError" not in down.text
    logged = [line for line in service.logs().splitlines() if "online feature store unavailable: " in line]
    assert logged, service.logs()
    assert "ConnectionError" in logged[0]
    assert f"127.0.0.1:{redis_server.port}" in logged[0]
    assert service.process.poll() is None
    assert httpx.get(service.url + "/v2/health/live", timeout=5).status_code == 200
    assert "feature_store_errors_total 1.0" in httpx.get(service.url + "/metrics", timeout=5).text

    # Redis is back but empty (no persistence): the service scores again, every stored feature missing.
    redis_server.start()
    empty = predict()
    assert empty.status_code == 200, empty.text
    assert sorted(empty.json()["missing_features"]) == sorted(STORED_FEATURES)

    # Re-materialize: the same process serves complete features again, without a restart.
    scaled_project.run("mlops", "features")
    recovered = predict()
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["missing_features"] == []
    assert recovered.json()["fraud_probability"] == pytest.approx(scored.json()["fraud_probability"])
    assert service.process.poll() is None


def test_unset_profile_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_recipes.io.feature_store import FeatureStoreError, open_store
    from mlops_recipes.settings import Settings

    monkeypatch.setenv("FEAST_CONFIG", "feature_store.scaled.yaml")
    monkeypatch.setenv("FEAST_REGISTRY_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/unused")
    monkeypatch.delenv("FEAST_REDIS_CONNECTION", raising=False)
    monkeypatch.delenv("MLOPS_FEAST_CONFIG", raising=False)

    # Feast would keep the literal "${FEAST_REDIS_CONNECTION}" and fail on it with KeyError: 'port'.
    with pytest.raises(FeatureStoreError, match=r"feature_store\.scaled\.yaml needs .*: FEAST_REDIS_CONNECTION$"):
        open_store(Settings(project_root=REPO_ROOT))


# --- Fresh customer features on Redis (the event log beside the online store, the replay) ---------------------


def _project_settings(project: Any) -> Any:
    """Settings of ``project`` from its own environment only (earlier tests leave MLFLOW_* & co. in this one)."""
    from mlops_recipes.settings import Settings

    prefixes = ("MLFLOW_", "MLOPS_", "FEAST_")
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith(prefixes)]:
            env.delenv(name)
        for name, value in project.env.items():
            if name.startswith(prefixes):
                env.setenv(name, value)
        return Settings(project_root=project.root)


class _Rows:
    """A RowWriter that keeps the rows it is given (the Feast write is tested through the service)."""

    def __init__(self) -> None:
        self.written: list[Any] = []

    def __call__(self, rows: Any) -> None:
        self.written.extend(rows)


def test_redis_event_log_counts_every_concurrent_event_once(redis_server: RedisServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mlops_recipes.io.customer_events import CustomerEvent, RedisEventLog

    project = f"test_{secrets.token_hex(3)}"
    # Four "workers"; a generous lock wait: on a busy machine 8 threads on one customer queue for a while, and
    # this test is about counting, not latency.
    logs = [RedisEventLog(redis_server.client(), project=project, lock_wait_s=30.0) for _ in range(4)]
    start = 1_796_000_000_000_000
    events = [CustomerEvent(7, f"tx-{i}", start + i * 1_000, 1.0 + i) for i in range(60)]
    rows = _Rows()

    def record(i: int) -> bool:
        # Every event is sent twice (a client retry) by two different workers.
        first = logs[i % 4].record(events[i // 2], account_created_ts=1.0, write=rows).counted
        return first

    with ThreadPoolExecutor(8) as pool:
        counted = list(pool.map(record, range(120)))

    assert sum(counted) == 60
    final = max(rows.written, key=lambda r: r[1])[2]
    assert final["cust_txn_count_1h"] == 60
    assert final["cust_amount_sum_1h"] == pytest.approx(sum(1.0 + i for i in range(60)))
    stamps = [stamp for _, stamp, _ in rows.written]
    assert len(set(stamps)) == len(stamps) == 60  # each write strictly newer than the one before
    # A late event joins its window without moving the row's time back.
    late = logs[0].record(CustomerEvent(7, "late", start - 10_000_000, 5.0), account_created_ts=None, write=rows)
    assert late.counted
    assert late.row is not None
    assert late.row["cust_txn_count_1h"] == 61
    assert late.row["cust_last_txn_ts"] == final["cust_last_txn_ts"]
    logs[0].clear()
    assert not list(redis_server.client().scan_iter(match=f"mlops:{project}:*"))


def test_redis_event_log_records_a_batch_customer_by_customer(redis_server: RedisServer) -> None:
    from mlops_recipes.io.customer_events import CustomerEvent, RedisEventLog

    log = RedisEventLog(redis_server.client(), project=f"test_{secrets.token_hex(3)}")
    start = 1_796_000_000_000_000
    rows = _Rows()

    def fails_for_customer_9(batch: Any) -> None:
        if any(customer == 9 for customer, _, _ in batch):
            raise ConnectionError("online store down for this key (fault injected)")
        rows(batch)

    batch = [
        CustomerEvent(8, "a", start, 1.0),
        CustomerEvent(9, "b", start, 2.0),
        CustomerEvent(8, "c", start + 1, 3.0),
    ]
    outcomes = log.record_all(batch, {8: 5.0}, write=fails_for_customer_9)

    assert outcomes[8] == 2
    assert isinstance(outcomes[9], ConnectionError)  # its own failure: customer 8 is recorded all the same
    assert rows.written[-1][2]["cust_txn_count_1h"] == 2
    assert log.history(9)[0] == {}
    log.clear()


# The rewind keeps the SQL registry as it is (feature_store.reset_online_store): tearing the project down and
# re-applying it fails on Feast 0.67's SQL registry, whose delete_project leaves the view version history behind.
def test_replayed_scores_equal_the_offline_ones_on_redis(
    scaled_project: Any, scaled_env: dict[str, str], start_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_recipes.io.models import load_alias
    from mlops_recipes.monitoring.replay import compare, daily_batch, offline_reference, replay, rewind_online_store

    settings = _project_settings(scaled_project)
    # Feast expands ${FEAST_*} in feature_store.scaled.yaml from this process' environment at every open.
    for name, value in scaled_env.items():
        monkeypatch.setenv(name, value)
    events = pd.read_parquet(scaled_project.root / "data" / "validated" / "transactions.parquet")
    cut = events["event_timestamp"].max() - pd.Timedelta(hours=48)
    rewind_online_store(settings, events, cut)
    metrics_dir = str(scaled_project.root / "prometheus-replay")
    service = start_service(scaled_project, workers=2, env={**scaled_env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir})
    service.wait_ready(timeout=180)
    later = events[events["event_timestamp"] > cut]

    contract = settings.contract()
    fields = [*contract.categorical, *contract.numeric]
    served = replay(service.url, later, since=cut, fields=fields, on_new_day=daily_batch(settings))
    report = compare(served, offline_reference(settings, later, load_alias(settings, "champion")), threshold=0.5)

    assert report.rows == len(later) > 300
    assert report.equal_share >= 0.999, report
    assert abs(report.recall_served - report.recall_offline) <= 0.03, report
    # The rows were written to Redis through Feast, and the log lives beside them.
    assert any(redis_server_key.startswith(b"mlops:") for redis_server_key in _redis_keys(scaled_env))


def _redis_keys(scaled_env: dict[str, str]) -> list[bytes]:
    import redis

    address, database = scaled_env["FEAST_REDIS_CONNECTION"].split(",db=")
    host, port = address.split(":")
    return list(redis.Redis(host=host, port=int(port), db=int(database)).scan_iter(count=1000))


def test_feast_registry_down_is_a_counted_503_and_a_clear_stage_error(
    scaled_project: Any, scaled_env: dict[str, str], start_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_recipes.io import feature_store

    # A Postgres of its own for the registry: the session one also holds MLflow's store, which must stay up.
    registry_server = PostgresServer()
    registry_server.start()
    try:
        admin = PostgresAdmin(registry_server.url)
        admin.run('CREATE DATABASE "feast"')
        env = {**scaled_env, "FEAST_REGISTRY_URL": admin.database_url("feast", driver="postgresql+psycopg")}
        # The same definitions and project: Redis already holds their rows.
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = _project_settings(scaled_project)
        store = feature_store.open_store(settings)
        feature_store.apply_definitions(store, feature_store.load_definitions(settings.feature_repo_path))
        del store
        # The test server commits asynchronously (synchronous_commit=off): a SIGKILL right after the apply could
        # lose its last commits, so write them out first. The crash itself stays a crash.
        admin.run("CHECKPOINT")
        registry_server.kill()

        # Started while the registry is down: the model loads (MLflow), every lookup is a counted 503.
        service = start_service(
            scaled_project,
            env={
                **env,
                "PROMETHEUS_MULTIPROC_DIR": str(scaled_project.root / "prometheus-registry"),
                "SERVING_UPDATE_CUSTOMER_FEATURES": "false",
            },
        )
        service.wait_ready()
        transaction = known_transaction(scaled_project)
        down = httpx.post(service.url + "/predict", json=transaction, timeout=10)
        assert down.status_code == 503, down.text
        assert down.json()["detail"] == "online feature store unavailable", down.text
        assert str(registry_server.port) not in down.text
        assert "feature_store_errors_total 1.0" in httpx.get(service.url + "/metrics", timeout=5).text
        assert "feature registry unavailable (feature_store.scaled.yaml): OperationalError" in service.logs()

        # The registry returns: the same process scores again, no restart.
        registry_server.start()
        back = httpx.post(service.url + "/predict", json=transaction, timeout=10)
        assert back.status_code == 200, back.text + "\n" + service.logs()[-4000:]
        assert back.json()["missing_features"] == []

        # Down again under a running service: Feast serves the definitions it has cached (a refresh that fails
        # keeps them), so scoring goes on; stages, which must write the registry, stop with a clear error.
        registry_server.kill()
        cached = httpx.post(service.url + "/predict", json=transaction, timeout=10)
        assert cached.status_code == 200, cached.text
        # In this process (a CLI start costs ~10 s of imports): the CLI maps FeatureStoreError to exit 1.
        from mlops_recipes.params import load_params
        from mlops_recipes.stages import features

        with pytest.raises(feature_store.FeatureStoreError, match=r"^feature registry unavailable \(feature_store"):
            features.run(settings, load_params(settings.path(settings.params_file)))
        assert service.process.poll() is None
    finally:
        registry_server.stop()
