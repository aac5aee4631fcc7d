"""Fixtures for tests of the running service: a trained project and real uvicorn processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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

    def wait_live(self, timeout: float = 90.0) -> float:
        """Seconds until /v2/health/live answers."""
        return self._wait("/v2/health/live", timeout)

    def wait_ready(self, timeout: float = 90.0) -> float:
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
def trained_project(project_factory: Callable[[str, dict[str, Any]], Any]) -> Any:
    """A project copy after `dvc repro`: a champion in its MLflow store, features in its online store."""
    project = project_factory("serving", {})
    project.run("dvc", "repro")
    return project


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
