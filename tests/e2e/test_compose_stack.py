"""The compose stack end to end, on this machine's Docker engine: ``make compose-test``.

Builds the app and MLflow images, brings ``docker-compose.yml`` up (all but Grafana) under a throwaway
project name and env file (a user's ``.env`` is never read), and then, through ports published on 127.0.0.1
only: the train job registers a champion in the MLflow server and materializes into Redis, the serving
container scores a transaction, Prometheus has scraped it, and a retrain run by the Prefect worker (its
``retrain-weekly`` deployment, triggered over the Prefect API) makes a new champion that the service picks
up while a client keeps scoring, with no failed request. The trust boundaries are checked on the running stack
too: MLflow refuses anonymous writes (401) and the scoring service's reader account (403), the Prefect API wants
its auth string, the scoring service reads the Feast registry with a read-only role, Redis wants its password,
and no secret of the env file is on any process's command line. Everything is torn down (``down -v``) at the
end, pass or fail, with the logs of the services that failed.

Figures are printed as it goes (image sizes, ``up`` to ready, train and retrain durations) and at the end.
Needs Docker and Compose (``docker/ensure-engine.sh`` provides both here); never skips.
Environment: ``MLOPS_E2E_DOCKER`` (client binary), ``MLOPS_E2E_COMPOSE`` (e.g. ``docker-compose``),
``MLOPS_E2E_KEEP=1`` leaves the stack up for inspection (then ``down -v`` it yourself: the command is printed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "fraud-detector"
IMAGE_TAG = "e2e"
APP_IMAGE = f"mlops-recipes-app:{IMAGE_TAG}"
MLFLOW_IMAGE = f"mlops-recipes-mlflow:{IMAGE_TAG}"
# Everything but Grafana, which no registry reachable from the project's machines has (checked statically).
SERVICES = (
    "postgres", "redis", "mlflow", "mlflow-metrics", "prefect-server", "worker", "train", "serving", "prometheus",
)  # fmt: skip
LONG_RUNNING = tuple(s for s in SERVICES if s != "train")


def log(message: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {message}", flush=True)  # noqa: T201


def docker_binary() -> str:
    """Debian's client where present: it has BuildKit built in (another client on the PATH may lack buildx)."""
    configured = os.environ.get("MLOPS_E2E_DOCKER")
    if configured:
        return configured
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def compose_command(docker: str) -> list[str]:
    """``docker compose`` (v2) if the client has it, else ``docker-compose`` (v1.29)."""
    configured = os.environ.get("MLOPS_E2E_COMPOSE")
    if configured:
        return shlex.split(configured)
    if subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail(
        "neither `docker compose` nor `docker-compose` is available: run docker/ensure-engine.sh", pytrace=False
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    """One compose project: its commands, published ports and the figures measured on it."""

    docker: str
    compose: list[str]
    project: str
    env_file: Path
    ports: dict[str, int]
    values: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def reader(self) -> tuple[str, str]:
        """The scoring service's MLflow account."""
        return ("reader", self.values["MLFLOW_READER_PASSWORD"])

    @property
    def writer(self) -> tuple[str, str]:
        """The pipeline's MLflow account."""
        return ("writer", self.values["MLFLOW_WRITER_PASSWORD"])

    @property
    def prefect_auth(self) -> tuple[str, str]:
        """The Prefect server's auth string, as HTTP basic credentials."""
        return ("prefect", self.values["PREFECT_API_PASSWORD"])

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False, env=clean_env()
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"`{shlex.join(args)}` exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}",
                pytrace=False,
            )
        return result

    def compose_run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        compose = [*self.compose, "--env-file", str(self.env_file), "-p", self.project]
        return self.run(*compose, *args, timeout=timeout, check=check)

    def containers(self) -> dict[str, dict[str, Any]]:
        """``docker inspect`` of the project's containers by service (found by Compose's labels: v1 and v2)."""
        ids = self.run(
            self.docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"
        ).stdout.split()
        if not ids:
            return {}
        inspected = json.loads(self.run(self.docker, "inspect", *ids).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}

    def container_id(self, service: str) -> str:
        container = self.containers().get(service)
        if container is None:
            pytest.fail(f"no container for service {service} in project {self.project}", pytrace=False)
        return str(container["Id"])

    def exec(self, service: str, *command: str, timeout: float = 120) -> str:
        return self.run(self.docker, "exec", self.container_id(service), *command, timeout=timeout).stdout

    def logs(self, service: str, tail: int = 150) -> str:
        result = self.compose_run("logs", "--no-color", "--tail", str(tail), service, check=False, timeout=60)
        return result.stdout + result.stderr


def clean_env() -> dict[str, str]:
    """The caller's environment without variables that Compose would prefer over the throwaway env file."""
    stack_keys = set(env_file_values({}).keys()) | {"COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "DOCKER_BUILDKIT"}
    env = {k: v for k, v in os.environ.items() if k not in stack_keys}
    env["DOCKER_BUILDKIT"] = "1"
    return env


def generated_secrets() -> dict[str, str]:
    """What ``make compose-env`` writes: every empty secret of .env.example with a fresh random value."""
    spec = importlib.util.spec_from_file_location("compose_env", REPO_ROOT / "docker" / "compose-env.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.fill((REPO_ROOT / ".env.example").read_text())
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def env_file_values(ports: dict[str, int]) -> dict[str, str]:
    """The throwaway .env: fresh secrets (as ``make compose-env`` makes them), free loopback ports, the e2e
    image tag, a quick registry poll."""
    return {
        **generated_secrets(),
        "MLOPS_IMAGE_TAG": IMAGE_TAG,
        "BIND_ADDRESS": "127.0.0.1",
        "SERVING_PORT": str(ports.get("serving", 8000)),
        "MLFLOW_PORT": str(ports.get("mlflow", 5000)),
        "PREFECT_PORT": str(ports.get("prefect", 4200)),
        "PROMETHEUS_PORT": str(ports.get("prometheus", 9090)),
        "GRAFANA_PORT": str(ports.get("grafana", 3000)),
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{ports.get('prefect', 4200)}/api",
        "SERVING_POLL_INTERVAL_S": "5",
    }


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` (and the last error) after timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            last = error
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})", pytrace=False)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Built images and a project name with its env file; ``down -v`` and failed services' logs at the end."""
    docker = docker_binary()
    if subprocess.run([docker, "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail(f"the Docker daemon does not answer `{docker} info`: run docker/ensure-engine.sh", pytrace=False)
    ports = {name: free_port() for name in ("serving", "mlflow", "prefect", "prometheus", "grafana")}
    env_dir = Path(tempfile.mkdtemp(prefix="mlops-e2e-"))
    env_file = env_dir / "stack.env"
    values = env_file_values(ports)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    stack = Stack(docker, compose_command(docker), f"mlops-e2e-{secrets.token_hex(3)}", env_file, ports, values)
    log(f"project {stack.project}, compose: {shlex.join(stack.compose)}, ports: {ports}")
    failed_before = request.session.testsfailed
    started = time.monotonic()
    try:
        yield stack
    finally:
        failed = request.session.testsfailed > failed_before
        try:
            report_failed_services(stack, everything=failed)
        finally:
            if os.environ.get("MLOPS_E2E_KEEP") == "1":
                log(f"kept: {shlex.join([*stack.compose, '--env-file', str(env_file), '-p', stack.project])} down -v")
            else:
                down = stack.compose_run("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=300)
                log(f"down -v: exit {down.returncode}")
                shutil.rmtree(env_dir, ignore_errors=True)
        stack.figures["stack tests (build to teardown)"] = f"{time.monotonic() - started:.0f} s"
        log("figures:\n" + "\n".join(f"  {k:<44} {v}" for k, v in stack.figures.items()))


def report_failed_services(stack: Stack, *, everything: bool) -> None:
    """Print the logs of services that exited non-zero or are unhealthy (of every service if a test failed)."""
    for service, container in sorted(stack.containers().items()):
        state = container["State"]
        health = (state.get("Health") or {}).get("Status")
        broken = (state["Status"] == "exited" and state["ExitCode"] != 0) or health == "unhealthy"
        if broken or everything:
            log(f"--- {service}: {state['Status']} (exit {state['ExitCode']}, health {health}); last log lines:")
            print(stack.logs(service, tail=150 if broken else 30), flush=True)  # noqa: T201


# ------------------------------------------------------------------------------------------------------------


def test_images_build_and_are_lean_unprivileged_and_precompiled(stack: Stack) -> None:
    for image, dockerfile in ((APP_IMAGE, "docker/app.Dockerfile"), (MLFLOW_IMAGE, "docker/mlflow.Dockerfile")):
        started = time.monotonic()
        commit = f"GIT_COMMIT={head_commit()}"
        stack.run(stack.docker, "build", "-q", "-f", dockerfile, "-t", image, "--build-arg", commit, ".", timeout=1200)
        stack.figures[f"build {image}"] = f"{time.monotonic() - started:.0f} s"
        size = int(stack.run(stack.docker, "image", "inspect", "-f", "{{.Size}}", image).stdout)
        stack.figures[f"size {image}"] = megabytes(size)
        log(f"built {image} in {stack.figures[f'build {image}']}: {megabytes(size)}")

    # Not root, and the environment's bytecode was compiled at build time (each process would recompile
    # Feast, MLflow & co. on import where it cannot write: PYTHONDONTWRITEBYTECODE is set in the image). The
    # library is installed; the shells are not (the wheel is the library only) and are found in /app from any
    # working directory (PYTHONPATH=/app).
    probe = (
        "id -u; find /app/.venv -name '*.pyc' | wc -l; cd / && "
        "python -c 'import mlops_recipes as m, serving as s, flows as f; print(m.__file__, s.__file__, f.__file__)'"
    )
    uid, pycs, module, shell, flows = stack.run(
        stack.docker, "run", "--rm", "--entrypoint", "sh", APP_IMAGE, "-c", probe
    ).stdout.split()
    assert uid == "10001"
    assert int(pycs) > 10_000, f"only {pycs} .pyc files in the app environment"
    assert module.startswith("/app/.venv/lib/"), f"the library is not installed into the environment: {module}"
    assert (shell, flows) == ("/app/serving/__init__.py", "/app/flows/__init__.py")

    locked = {p["name"]: p["version"] for p in tomllib.loads((REPO_ROOT / "uv.lock").read_text())["package"]}
    versions = stack.run(
        stack.docker, "run", "--rm", "--entrypoint", "python", MLFLOW_IMAGE, "-c",
        "import os, mlflow, psycopg; print(os.getuid(), mlflow.__version__, psycopg.__version__)",
    ).stdout.split()  # fmt: skip
    assert versions == ["10002", locked["mlflow"], locked["psycopg"]], (
        f"MLflow image: uid, mlflow, psycopg = {versions}"
    )


def test_stack_comes_up_trains_and_serves(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose_run("up", "-d", "--no-build", *SERVICES, timeout=900)
    stack.figures["compose up -d (returns)"] = f"{time.monotonic() - started:.0f} s"

    def healthy() -> bool:
        containers = stack.containers()
        for service in LONG_RUNNING:
            state = containers[service]["State"]
            if state["Status"] != "running":
                pytest.fail(f"{service} is {state['Status']} (exit {state['ExitCode']})", pytrace=False)
        waiting = [
            s for s in LONG_RUNNING if s != "serving" and containers[s]["State"]["Health"]["Status"] != "healthy"
        ]
        return not waiting

    wait_for("every service but serving healthy", healthy, timeout=420, interval=2)
    stack.figures["up -> services healthy"] = f"{time.monotonic() - started:.0f} s"
    log(f"services healthy after {stack.figures['up -> services healthy']}")

    def train_finished() -> dict[str, Any] | None:
        state: dict[str, Any] = stack.containers()["train"]["State"]
        return state if state["Status"] == "exited" else None

    state = wait_for("the train job to finish", train_finished, timeout=900, interval=2)
    train_logs = stack.logs("train", tail=60)
    assert state["ExitCode"] == 0, f"the train job exited {state['ExitCode']}:\n{train_logs}"
    assert "champion: v1" in train_logs, train_logs
    trained_at = time.monotonic()
    stack.figures["up -> train job done"] = f"{trained_at - started:.0f} s"
    log(f"train job done after {stack.figures['up -> train job done']}")

    wait_for(
        "serving ready (a champion loaded)",
        lambda: httpx.get(stack.url("serving") + "/v2/health/ready", timeout=5).status_code == 200,
        timeout=180,
        interval=0.5,
    )
    stack.figures["up -> serving ready (incl. training)"] = f"{time.monotonic() - started:.0f} s"
    log(f"serving ready after {stack.figures['up -> serving ready (incl. training)']}")
    wait_for(
        "serving container healthy",
        lambda: stack.containers()["serving"]["State"]["Health"]["Status"] == "healthy",
        timeout=60,
    )

    # DVC ran without git (core.no_scm) and its state lives in the workspace volume: nothing left to do.
    status = stack.exec("worker", "dvc", "status")
    assert "up to date" in status, status
    # The champion is on the MLflow server (through its published port), not in an embedded store.
    champion = httpx.get(
        stack.url("mlflow") + "/api/2.0/mlflow/registered-models/alias",
        params={"name": MODEL_NAME, "alias": "champion"},
        auth=stack.reader,
        timeout=30,
    )
    assert champion.status_code == 200, champion.text
    assert champion.json()["model_version"]["version"] == "1"
    # Lineage without .git in the container: the run carries the commit the image was built from.
    run = httpx.get(
        stack.url("mlflow") + "/api/2.0/mlflow/runs/get",
        params={"run_id": champion.json()["model_version"]["run_id"]},
        auth=stack.reader,
        timeout=30,
    ).json()["run"]
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    assert tags["git_commit"] == head_commit()
    # What people open in a browser answers on its published port: API docs, MLflow UI, Prefect UI (it
    # writes its static files at start: not into the read-only environment), and the Prefect UI's idea of
    # where the API is, which must be the published one.
    pages = {"serving": "/docs", "mlflow": "/", "prefect": "/"}
    for service, path in pages.items():
        page = stack.url(service) + path
        response = httpx.get(page, auth=stack.reader if service == "mlflow" else None, timeout=30)
        assert response.status_code == 200, f"{page}: {response.status_code}"
        assert "<html" in response.text.lower(), f"{page} is not a page"
    ui_settings = httpx.get(stack.url("prefect") + "/ui-settings", timeout=10).json()
    assert ui_settings["api_url"] == stack.url("prefect") + "/api"


def known_transaction(stack: Stack) -> dict[str, Any]:
    """A customer the features stage read back online, at the merchant with the latest feature row."""
    script = (
        "import json, pandas as pd; "
        "r = json.load(open('reports/features.json')); "
        "m = pd.read_parquet('data/features/merchant_stats.parquet')"
        ".sort_values(['event_timestamp', 'merchant_id']).iloc[-1]['merchant_id']; "
        "print(json.dumps({'customer_id': r['online_check']['customer_id'], 'merchant_id': int(m)}))"
    )
    ids: dict[str, Any] = json.loads(stack.exec("worker", "python", "-c", script))
    return {**ids, "amount": 42.0, "channel": "online", "event_timestamp": dt.datetime.now(dt.UTC).isoformat()}


def test_serving_scores_with_online_features_from_redis(stack: Stack) -> None:
    transaction = known_transaction(stack)
    response = httpx.post(stack.url("serving") + "/predict", json=transaction, timeout=10)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == MODEL_NAME
    assert body["model_version"] == "1"
    assert body["missing_features"] == [], body
    assert 0.0 <= body["fraud_probability"] <= 1.0


# The scoring container's view of the Feast registry database: what its role can read and what it cannot do.
_REGISTRY_PROBE = """
import json, os, psycopg
url = os.environ["FEAST_REGISTRY_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
out = {"env": sorted(k for k in os.environ if k.startswith("POSTGRES"))}
with psycopg.connect(url, autocommit=True) as conn:
    out["user"] = conn.execute("select current_user").fetchone()[0]
    out["superuser"] = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]
    out["feature_services"] = conn.execute("select count(*) from feature_services").fetchone()[0]
    for name, sql in (("update", "update feast_metadata set metadata_value = metadata_value"),
                      ("delete", "delete from feature_services"),
                      ("create", "create table intruder (i int)")):
        try:
            conn.execute(sql)
            out[name] = "allowed"
        except psycopg.Error as error:
            out[name] = type(error).__name__
try:
    psycopg.connect(url.rsplit("/", 1)[0] + "/mlflow").close()
    out["other_database"] = "allowed"
except psycopg.Error as error:
    out["other_database"] = type(error).__name__
print(json.dumps(out))
"""


def test_the_stack_has_no_unauthenticated_or_overprivileged_write_path(stack: Stack) -> None:
    """The access model of docs/compose.md, on the running stack (after the train job, before the retrain)."""
    mlflow = stack.url("mlflow")
    experiment = httpx.get(
        f"{mlflow}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "fraud-detection"},
        auth=stack.reader,
        timeout=30,
    )
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment"]["experiment_id"]
    alias = {"name": MODEL_NAME, "alias": "champion", "version": "1"}
    create_run = ("/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id})
    set_alias = ("/api/2.0/mlflow/registered-models/alias", alias)
    new_version = ("/api/2.0/mlflow/model-versions/create", {"name": MODEL_NAME, "source": "mlflow-artifacts:/x"})

    def post(route: tuple[str, dict[str, Any]], auth: tuple[str, str] | None) -> int:
        return httpx.post(mlflow + route[0], json=route[1], auth=auth, timeout=30).status_code

    # MLflow: no anonymous access at all (reads included), health aside; the reader (serving) reads only; the
    # writer (train, worker) moves the alias (here to the version it already names: nothing changes).
    assert httpx.get(f"{mlflow}/health", timeout=10).status_code == 200
    assert httpx.get(f"{mlflow}/api/2.0/mlflow/experiments/search", timeout=10).status_code == 401
    assert [post(route, None) for route in (create_run, set_alias, new_version)] == [401, 401, 401]
    assert [post(route, stack.reader) for route in (create_run, set_alias, new_version)] == [403, 403, 403]
    assert httpx.get(f"{mlflow}/metrics", auth=stack.reader, timeout=30).status_code == 403  # admin only
    assert post(set_alias, stack.writer) == 200
    intruder = {"username": "intruder", "password": secrets.token_hex(16)}
    user_create = httpx.post(f"{mlflow}/api/2.0/mlflow/users/create", json=intruder, auth=stack.writer, timeout=30)
    assert user_create.status_code == 403, user_create.text

    # Prefect: every API call but the health check wants the auth string.
    prefect = stack.url("prefect") + "/api"
    assert httpx.get(f"{prefect}/health", timeout=10).status_code == 200

    def deployments(auth: tuple[str, str] | None) -> int:
        return httpx.post(f"{prefect}/deployments/filter", json={}, auth=auth, timeout=10).status_code

    assert [deployments(None), deployments(("prefect", "wrong")), deployments(stack.prefect_auth)] == [401, 401, 200]

    # Postgres: the scoring service holds a read-only registry role, not the superuser.
    registry = json.loads(stack.exec("serving", "python", "-c", _REGISTRY_PROBE))
    assert registry["env"] == [], registry
    assert (registry["user"], registry["superuser"]) == ("feast_reader", False), registry
    assert registry["feature_services"] >= 1, registry
    assert {registry[k] for k in ("update", "delete", "create")} == {"InsufficientPrivilege"}, registry
    assert registry["other_database"] != "allowed", registry
    serving_env = "\n".join(stack.containers()["serving"]["Config"]["Env"])
    assert stack.values["POSTGRES_PASSWORD"] not in serving_env
    assert stack.values["MLFLOW_WRITER_PASSWORD"] not in serving_env

    # Redis: nothing without the password.
    anonymous = stack.exec("redis", "env", "-u", "REDISCLI_AUTH", "redis-cli", "ping")
    assert "NOAUTH" in anonymous, anonymous

    # No secret on any command line: every process of every container, and what Docker records.
    secret_values = {k: v for k, v in stack.values.items() if k.endswith(("PASSWORD", "_KEY"))}
    for service, container in stack.containers().items():
        if container["State"]["Status"] != "running":
            continue
        recorded = " ".join([*(container["Config"]["Entrypoint"] or []), *(container["Config"]["Cmd"] or [])])
        command_lines = stack.exec(service, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        leaked = sorted(k for k, v in secret_values.items() if v in command_lines or v in recorded)
        assert not leaked, f"{service}: {leaked} on a command line:\n{command_lines[:2000]}"


def run_deployment_to_the_end(
    prefect: httpx.Client, deployment_id: str, parameters: dict[str, Any], *, what: str, timeout: float = 900
) -> tuple[str, dict[str, Any], str]:
    """Create a flow run of a deployment over the Prefect API, wait until it ends: its id, final state and logs."""
    run = prefect.post(f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]

    def finished() -> dict[str, Any] | None:
        state: dict[str, Any] = prefect.get(f"/flow_runs/{run_id}").json()["state"]
        return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    state = wait_for(what, finished, timeout=timeout, interval=2)
    logs = prefect.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}})
    return run_id, state, logs.text


def prefect_client(stack: Stack) -> httpx.Client:
    """The Prefect API on its published port, with the server's auth string."""
    return httpx.Client(base_url=stack.url("prefect") + "/api", auth=stack.prefect_auth, timeout=10)


def head_commit() -> str:
    """The commit the images are built from (what MLflow runs in the containers are tagged with)."""
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def prometheus_value(stack: Stack, query: str) -> float | None:
    response = httpx.get(stack.url("prometheus") + "/api/v1/query", params={"query": query}, timeout=5)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_service_and_mlflow_with_the_rules_loaded(stack: Stack) -> None:
    wait_for(
        "Prometheus to have scraped a scoring request from the serving container",
        lambda: (prometheus_value(stack, 'sum(http_requests_total{job="fraud-serving",route="/predict"})') or 0) >= 1,
        timeout=60,
        interval=2,
    )
    assert prometheus_value(stack, 'up{job="fraud-serving"}') == 1.0
    assert prometheus_value(stack, 'up{job="mlflow"}') == 1.0
    assert prometheus_value(stack, 'up{job="prefect"}') == 1.0
    rules = httpx.get(stack.url("prometheus") + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    rule_files = (REPO_ROOT / "monitoring/prometheus/rules").glob("*.yml")
    expected = {group["name"] for path in rule_files for group in yaml.safe_load(path.read_text())["groups"]}
    assert {g["name"] for g in rules} == expected


def copy_yaml_into(stack: Stack, service: str, data: Any, destination: str) -> None:
    """Write ``data`` as YAML to ``destination`` inside ``service``'s container (readable by its user)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(data, handle, sort_keys=False)
    os.chmod(handle.name, 0o644)  # docker cp keeps the mode; the container's user must read it
    try:
        stack.run(stack.docker, "cp", handle.name, f"{stack.container_id(service)}:{destination}")
    finally:
        os.unlink(handle.name)


@dataclass
class ScoringLoop:
    """A client scoring one transaction in a loop meanwhile: outcomes by status, versions served in order."""

    outcomes: Counter[str] = field(default_factory=Counter)
    versions: list[str] = field(default_factory=list)


@contextlib.contextmanager
def scoring_meanwhile(stack: Stack, transaction: dict[str, Any], *, pause_s: float) -> Iterator[ScoringLoop]:
    """Score ``transaction`` every ``pause_s`` on a thread while the block runs (a zero-downtime check)."""
    loop, stop = ScoringLoop(), threading.Event()

    def score() -> None:
        with httpx.Client(base_url=stack.url("serving"), timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post("/predict", json=transaction)
                except httpx.HTTPError as error:
                    loop.outcomes[type(error).__name__] += 1
                    continue
                loop.outcomes[str(response.status_code)] += 1
                if response.status_code == 200:
                    version = response.json()["model_version"]
                    if loop.versions[-1:] != [version]:
                        loop.versions.append(version)
                time.sleep(pause_s)

    client = threading.Thread(target=score, daemon=True)
    client.start()
    try:
        yield loop
    finally:
        stop.set()
        client.join(30)


def test_retrain_through_the_prefect_worker_swaps_the_champion_without_failed_requests(stack: Stack) -> None:
    prefect = prefect_client(stack)
    deployment = prefect.get("/deployments/name/retrain/retrain-weekly")
    assert deployment.status_code == 200, f"retrain-weekly is not deployed: {deployment.text}"

    # A parameter change: another training seed. The gate is opened (any candidate above the floor) so that
    # the outcome does not hang on the seed's luck: the swap is under test here, the gate has its own tests.
    params = yaml.safe_load(stack.exec("worker", "cat", "/workspace/params.yaml"))
    params["train"]["seed"] += 1
    params["register"]["min_improvement"] = -1.0
    copy_yaml_into(stack, "worker", params, "/workspace/params.yaml")

    started = time.monotonic()
    with scoring_meanwhile(stack, known_transaction(stack), pause_s=0.02) as loop:
        _, state, logs = run_deployment_to_the_end(
            prefect, deployment.json()["id"], {"refresh_data": False}, what="the retrain flow run (Prefect worker)"
        )
        if state["type"] != "COMPLETED":
            pytest.fail(f"retrain ended {state['type']}: {state.get('message')}\n{logs[-4000:]}", pytrace=False)
        stack.figures["retrain flow run (Prefect worker)"] = f"{time.monotonic() - started:.0f} s"
        log(f"retrain flow completed in {stack.figures['retrain flow run (Prefect worker)']}")

        champion = httpx.get(
            stack.url("mlflow") + "/api/2.0/mlflow/registered-models/alias",
            params={"name": MODEL_NAME, "alias": "champion"},
            auth=stack.reader,
            timeout=30,
        ).json()["model_version"]["version"]
        assert champion == "2", f"the retrain did not promote a new champion (champion is v{champion})"
        completed = time.monotonic()
        wait_for("the service to score with v2", lambda: loop.versions[-1:] == ["2"], timeout=90, interval=0.5)
        stack.figures["champion promoted -> served"] = f"{time.monotonic() - completed:.1f} s"
        time.sleep(3)  # a few more requests on the new model (every worker process has swapped)
    outcomes, versions = loop.outcomes, loop.versions

    log(f"requests during the retrain: {dict(outcomes)}; versions served in order: {versions}")
    stack.figures["requests during retrain"] = f"{sum(outcomes.values())} ({dict(outcomes)})"
    assert set(outcomes) == {"200"}, f"failed requests during the retrain and swap: {dict(outcomes)}"
    assert versions[0] == "1"
    assert versions[-1] == "2"


def test_the_monitor_flow_reads_alerts_from_prometheus_on_the_worker(stack: Stack) -> None:
    """The feedback loop's wiring: the worker reaches Prometheus (MLOPS_PROMETHEUS_URL) and the run completes.

    No retraining alert fires on this calm stack, so the run starts nothing; the decision logic has its own tests.
    """
    prefect = prefect_client(stack)
    deployment = prefect.get("/deployments/name/monitor/monitor-every-15m")
    assert deployment.status_code == 200, f"monitor-every-15m is not deployed: {deployment.text}"
    run_id, state, logs = run_deployment_to_the_end(
        prefect, deployment.json()["id"], {}, what="the monitor flow run (Prefect worker)", timeout=300
    )
    assert state["type"] == "COMPLETED", f"monitor ended {state['type']}: {state.get('message')}\n{logs[-4000:]}"
    # The decision, from the run's artifact (written before the run completes; log batches may still be in flight).
    artifacts = prefect.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}).json()
    decisions = [a["data"] for a in artifacts if a["key"] == "monitor-decision"]
    assert len(decisions) == 1, artifacts
    assert "| firing retraining alerts | none |" in decisions[0]
    assert "| retrain run | - |" in decisions[0]


_REGISTER_CANDIDATE = """
import mlflow
from mlflow import MlflowClient
from mlops_recipes.settings import Settings
s = Settings()
c = MlflowClient(tracking_uri=s.resolved_tracking_uri, registry_uri=s.resolved_registry_uri)
champion = c.get_model_version_by_alias(s.model_name, "champion")
# The champion's logged model (models:/m-...) registered again, as the register stage does: the tracking server
# takes the run and model ids from the logged model itself.
mlflow.set_tracking_uri(s.resolved_tracking_uri)
mlflow.set_registry_uri(s.resolved_registry_uri)
print(mlflow.register_model(champion.source, s.model_name, tags=champion.tags).version)
"""


def test_a_short_rollout_plan_promotes_a_candidate_through_the_prefect_worker(stack: Stack) -> None:
    """The rollout wiring: the worker runs the plan flow against the stack's Prometheus, the service follows the
    record, the candidate (the champion's model registered again) passes shadow and canary and is promoted.

    The analysis itself (aborting a failing candidate) has its own tests (tests/integration/test_rollouts.py).
    """
    prefect = prefect_client(stack)
    deployment = prefect.get("/deployments/name/rollout/rollout-plan")
    assert deployment.status_code == 200, f"rollout-plan is not deployed: {deployment.text}"
    # The version is the last line printed (MLflow may print its own lines before it).
    candidate = stack.exec("worker", "python", "-c", _REGISTER_CANDIDATE).strip().splitlines()[-1]
    # The project's plan with short steps: Prometheus scrapes every 15 s here, so windows of 1 minute.
    plan = yaml.safe_load((REPO_ROOT / "monitoring/rollout-plan.yaml").read_text())
    plan["poll_s"] = 15
    plan["checks"] = [c for c in plan["checks"] if c["name"] in {"candidate_traffic", "candidate_error_ratio"}]
    for check in plan["checks"]:
        check["query"] = check["query"].replace("[5m]", "[1m]")
    checks = [c["name"] for c in plan["checks"]]
    plan["steps"] = [
        {"mode": "shadow", "percent": 100, "duration_s": 60, "checks": checks},
        # One customer's traffic here: it may sit on the champion's side, so no traffic check in the canary.
        {"mode": "canary", "percent": 50, "duration_s": 45, "checks": ["candidate_error_ratio"]},
    ]
    copy_yaml_into(stack, "worker", plan, "/workspace/rollout-e2e.yaml")

    started = time.monotonic()
    with scoring_meanwhile(stack, known_transaction(stack), pause_s=0.05) as loop:
        _, state, logs = run_deployment_to_the_end(
            prefect,
            deployment.json()["id"],
            {"version": candidate, "plan_file": "rollout-e2e.yaml"},
            what="the rollout plan flow run (Prefect worker)",
            timeout=420,
        )
        assert state["type"] == "COMPLETED", f"rollout ended {state['type']}: {state.get('message')}\n{logs[-4000:]}"
        stack.figures["short rollout plan (shadow 60 s, canary 45 s)"] = f"{time.monotonic() - started:.0f} s"
        status = json.loads(stack.exec("worker", "mlops", "rollout", "status", "--json"))
        assert (status["version"], status["status"]) == (candidate, "promoted"), status
        wait_for(
            "the service to score with the promoted candidate", lambda: loop.versions[-1:] == [candidate], timeout=90
        )
    outcomes = loop.outcomes
    assert set(outcomes) == {"200"}, f"failed requests during the rollout: {dict(outcomes)}"
