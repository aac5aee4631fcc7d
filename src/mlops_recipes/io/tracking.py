"""MLflow tracking set-up: always an explicit, absolute URI from settings (never MLflow's cwd default)."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured stores and experiment; return a client for the registry."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri)
    mlflow.set_experiment(settings.experiment_name)
    return MlflowClient(tracking_uri=settings.resolved_tracking_uri, registry_uri=settings.resolved_registry_uri)


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
