"""The project as the tests and the benchmarks drive it: its tools' environment, and fresh clones of it.

Shared by ``tests/conftest.py`` and ``bench/*.py`` (which put ``tests/`` on ``sys.path`` to import this package):
one definition of which inherited variables a project run must not see, and of how a clone of the current
commit is made.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent  # the locked environment's tools (dvc, mlops, mlflow, prefect)

# Variables libraries set in the calling process itself (``mlflow.set_tracking_uri`` exports MLFLOW_TRACKING_URI;
# ``import feast`` sets PROMETHEUS_MULTIPROC_DIR) or a developer's shell set for another project: a project run
# must not inherit them.
PROCESS_LOCAL_PREFIXES = ("MLFLOW_", "MLOPS_", "FEAST_", "PROMETHEUS_")


def project_env(root: Path, *, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """Environment for the project's tools in ``root``: our venv first on PATH, nothing process-local inherited.

    ``drop``: more variable prefixes to leave out (``SERVING_``, ``PREFECT_``); ``extra``: variables to set.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith((*PROCESS_LOCAL_PREFIXES, *drop))}
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env["MLOPS_PROJECT_ROOT"] = str(root)
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "tests"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "tests@example.invalid"
    env.update(extra)
    return env


def clone_head(target: Path, *, worktree: bool = False) -> Path:
    """A fresh ``git clone`` of this checkout's HEAD in ``target``; ``worktree`` adds uncommitted tracked changes."""
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], check=True)
    if worktree:
        diff = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "diff", "HEAD", "--binary"], check=True, capture_output=True
        ).stdout
        if diff:
            subprocess.run(["git", "-C", str(target), "apply", "--whitespace=nowarn"], input=diff, check=True)
    return target
