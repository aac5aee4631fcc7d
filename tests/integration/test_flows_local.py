"""`make flows` as a user runs it: a real Prefect server, the prefect.yaml deployments and a process worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_local_prefect_stack_runs_a_deployed_flow(trained_project: Any, unused_port: Callable[[], int]) -> None:
    port = unused_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in trained_project.env.items() if not k.startswith("PREFECT_")}
    env["MLOPS_PROMETHEUS_URL"] = "http://127.0.0.1:9"  # the discard port: no Prometheus answers there
    log_path = trained_project.root / "flows-local.log"
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "flows.local", "--port", str(port), "--project-root", str(trained_project.root)],
            cwd=trained_project.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for_deployments(api, launcher, log_path)
            run = subprocess.run(
                [
                    str(Path(sys.executable).parent / "prefect"),
                    "deployment",
                    "run",
                    "materialize/materialize-hourly",
                    "--watch",
                ],
                cwd=trained_project.root,
                env={**env, "PREFECT_API_URL": api},
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            assert run.returncode == 0, run.stdout + run.stderr + log_path.read_text()
            assert "Completed" in run.stdout
            deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
            paused = {d["name"]: d["paused"] for d in deployments}
            assert set(paused) == {
                "materialize-hourly",
                "batch-score-daily",
                "retrain-weekly",
                "monitor-every-15m",
                "rollout-plan",
            }
            # No Prometheus here: the feedback loop is paused rather than failing every 15 minutes.
            assert paused == {name: name == "monitor-every-15m" for name in paused}
            assert "monitor/monitor-every-15m is paused" in log_path.read_text()
        finally:
            os.killpg(launcher.pid, signal.SIGTERM)
            launcher.wait(60)
    assert launcher.returncode == 0, log_path.read_text()


def _wait_for_deployments(api: str, launcher: subprocess.Popen[bytes], log_path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert launcher.poll() is None, log_path.read_text()
        if "Worker 'ProcessWorker" in log_path.read_text(errors="replace"):
            return
        time.sleep(1)
    raise AssertionError(f"worker not started within {timeout} s:\n{log_path.read_text()}")
