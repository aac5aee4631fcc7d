"""MLflow tracking set-up: explicit clients on the absolute URIs from settings (never MLflow's cwd default).

No module sets MLflow's process-wide URIs for good: reads and writes go through :func:`client`, and the few
calls that only exist in the fluent API run inside :func:`fluent`, which restores the URIs afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mlops_recipes.processes import alive
from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def client(settings: Settings) -> MlflowClient:
    """A client for the configured tracking store and registry: every read and write that a client can do."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.resolved_tracking_uri, registry_uri=settings.resolved_registry_uri)


def experiment_id(tracking: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created on first use."""
    from mlflow.exceptions import MlflowException

    found = tracking.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(tracking.create_experiment(name))
    except MlflowException as error:  # another stage created it a moment ago
        if getattr(error, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
        created = tracking.get_experiment_by_name(name)
        if created is None:
            raise
        return str(created.experiment_id)


@contextlib.contextmanager
def fluent(settings: Settings) -> Iterator[None]:
    """MLflow's fluent API pointed at the configured stores for the block only (:func:`client` for the rest).

    ``start_run``, ``log_model`` and ``register_model`` have no client form, and MLflow resolves ``models:/``
    sources through its process-wide URIs even inside the registry store. So the stages that log or register a
    model set those URIs here and put back what was there before (MLflow mirrors them in ``MLFLOW_TRACKING_URI``
    and ``MLFLOW_REGISTRY_URI``): nothing leaks into the rest of the process (the service, tests, a notebook).
    """
    import mlflow

    before = {name: os.environ.get(name) for name in _FLUENT_VARIABLES}
    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri)
    try:
        yield
    finally:
        # None puts MLflow back to "not set" (its code handles None; its annotations omit it).
        mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]
        mlflow.set_registry_uri(before["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# What the fluent API exports to the environment while it is pointed at our stores.
_FLUENT_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def git_commit(settings: Settings) -> str:
    """The current commit (with ``-dirty`` when the tree has changes), or ``unknown`` outside git.

    ``MLOPS_GIT_COMMIT`` wins when set: containers have no ``.git`` and get the commit at build time.
    """
    if settings.git_commit:
        return settings.git_commit

    def git(*args: str) -> str:
        return subprocess.run(  # noqa: S603 - fixed git arguments
            ["git", *args],  # noqa: S607 - git from PATH is the point
            cwd=settings.project_root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


# Tags a stage's run carries so that a later stage can tell whether the process behind it still lives.
HOST_TAG = "mlops.host"
PID_TAG = "mlops.pid"
ABANDONED_TAG = "mlops.abandoned"
# A RUNNING run started on another host is taken as abandoned only after this long (its pid cannot be checked).
FOREIGN_RUN_STALE_S = 6 * 3600


def process_tags() -> dict[str, str]:
    """Tags naming the process that runs a stage (see :func:`fail_abandoned_runs`)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def fail_abandoned_runs(client: MlflowClient, experiment_id: str, *, now: float | None = None) -> list[str]:
    """Mark FAILED the runs left RUNNING by a stage that was killed (``kill -9``, OOM, a lost container).

    A run is abandoned when its process is gone: on this host, its pid no longer exists; on another host (whose
    processes cannot be seen), it started more than ``FOREIGN_RUN_STALE_S`` ago. Runs without our process tags
    (started by hand, notebooks) are left alone. Returns the ids of the runs marked.
    """
    host = socket.gethostname()
    now = time.time() if now is None else now
    marked = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if PID_TAG not in tags or HOST_TAG not in tags:
            continue
        pid = int(tags[PID_TAG])
        if tags[HOST_TAG] == host:
            gone = pid != os.getpid() and not alive(pid)
        else:
            gone = now - (run.info.start_time or 0) / 1000 > FOREIGN_RUN_STALE_S
        if gone:
            client.set_tag(run.info.run_id, ABANDONED_TAG, f"process {tags[PID_TAG]} on {tags[HOST_TAG]} is gone")
            client.set_terminated(run.info.run_id, status="FAILED")
            marked.append(run.info.run_id)
    return marked
