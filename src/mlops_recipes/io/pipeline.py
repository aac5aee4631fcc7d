"""Running the DVC pipeline in-process (for orchestrators): one run at a time per project.

The same lock keeps the pipeline and incremental materialization apart: a materialization running while the
features stage rewrites the tables and the registry would read half of one and half of the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from mlops_recipes.errors import ReportedError
from mlops_recipes.settings import Settings


class PipelineBusy(ReportedError, RuntimeError):
    """Another pipeline run holds this project's lock."""


@contextlib.contextmanager
def exclusive(settings: Settings, *, holder: str = "dvc repro", wait_s: float = 0.0) -> Iterator[None]:
    """Hold the project's pipeline lock (a file lock: works across processes and without any server).

    Waits up to ``wait_s`` for another holder to finish, then raises :class:`PipelineBusy` naming it.
    """
    lock_path = settings.path(settings.data_dir) / ".pipeline.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with lock_path.open("a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    raise PipelineBusy(
                        f"another pipeline run holds {lock_path} ({handle.read().strip() or 'unknown'})"
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder}, pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _venv_on_path() -> Iterator[None]:
    # Stage commands are `mlops <stage>`: make sure they resolve to this environment's console script even
    # when the orchestrator was started without the virtualenv on PATH.
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{before}"
    try:
        yield
    finally:
        os.environ["PATH"] = before


def reproduce(settings: Settings, *, force: Sequence[str] = (), wait_s: float = 60.0) -> list[str]:
    """``dvc repro`` through DVC's Python API; ``force`` reruns those stages even if unchanged.

    Waits up to ``wait_s`` for a materialization (seconds) to let go of the lock; another pipeline run (minutes)
    makes it raise :class:`PipelineBusy`.

    Returns the names of the stages that ran (unchanged ones stay cached and are not listed).
    """
    from dvc.repo import Repo

    ran: list[str] = []
    # DVC resolves stage paths against the working directory, whatever root the Repo was opened with.
    root = settings.project_root
    with (
        exclusive(settings, holder="dvc repro", wait_s=wait_s),
        _venv_on_path(),
        contextlib.chdir(root),
        Repo(str(root)) as repo,
    ):
        for stage in force:
            ran += [s.addressing for s in repo.reproduce(stage, force=True, single_item=True)]
        ran += [s.addressing for s in repo.reproduce()]
    return list(dict.fromkeys(ran))
