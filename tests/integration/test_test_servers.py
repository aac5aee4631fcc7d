"""The suite's own PostgreSQL and Redis leave nothing behind, however the test run ends.

A real pytest run holds both servers (the session fixtures of ``support.fixtures``) and is then interrupted
(SIGINT, as Ctrl-C) or killed (SIGKILL, as a crash or the OOM killer): afterwards no server process is left and
no data directory remains.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration

SUPPORT_DIR = Path(__file__).resolve().parents[1]  # tests/, where the `support` package lives

HOLDING_TEST = """
import json, os, signal, time
from pathlib import Path


def test_hold(postgres_url, redis_server):
    # As a pytest started from a terminal takes Ctrl-C: a process inherits an ignored or blocked SIGINT from the
    # one that starts it (a test runner's worker may have either), and would then sleep through the SIGINT below.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    Path(os.environ["HOLD_FILE"]).write_text(json.dumps({"postgres_port": port, "redis": redis_server.pids}))
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _processes_naming(path: Path) -> list[int]:
    """Processes whose command line mentions ``path`` (the watchdogs and the postmaster do)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] != psutil.STATUS_ZOMBIE and any(str(path) in part for part in cmdline):
            found.append(process.info["pid"])
    return found


def _wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_no_server_outlives_the_test_run(tmp_path: Path, sig: signal.Signals) -> None:
    # The servers' TMPDIR: whatever they leave would stay in here. Not under tmp_path, whose parents are private
    # to the user: under root the PostgreSQL user must reach its directory.
    scratch = Path(tempfile.mkdtemp(prefix="mlops-test-servers-"))
    scratch.chmod(0o755)
    (tmp_path / "test_hold.py").write_text(HOLDING_TEST)
    hold_file = tmp_path / "hold.json"
    env = {
        **os.environ,
        "TMPDIR": str(scratch),
        "HOLD_FILE": str(hold_file),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SUPPORT_DIR), os.environ.get("PYTHONPATH")])),
    }
    env.pop("MLOPS_TEST_POSTGRES_URL", None)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "support.fixtures", "-p", "no:cacheprovider", "test_hold.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until(lambda: hold_file.exists() or run.poll() is not None, 180, "the servers to start")
        assert hold_file.exists(), run.communicate(timeout=10)[0].decode(errors="replace")
        held = json.loads(hold_file.read_text())
        (postgres_dir,) = scratch.glob("mlops-test-postgres-*")
        assert len(list(scratch.glob("mlops-test-redis-*"))) == 1
        postmaster = int((postgres_dir / "data" / "postmaster.pid").read_text().split()[0])
        assert str(held["postgres_port"]) in (postgres_dir / "data" / "postmaster.pid").read_text()
        servers = [postmaster, *held["redis"]]
        assert all(_running(pid) for pid in servers)
        assert len(_processes_naming(scratch)) >= 3  # the postmaster and both watchdogs

        os.kill(run.pid, sig)
        run.wait(60)

        _wait_until(lambda: not any(_running(pid) for pid in servers), 30, f"servers {servers} to stop")
        _wait_until(lambda: not any(scratch.iterdir()), 30, "the server directories to be removed")
        _wait_until(lambda: not _processes_naming(scratch), 30, "the watchdogs to exit")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("server_class", ["RedisServer", "PostgresServer"])
def test_a_server_that_shuts_down_is_not_held_for_the_grace_period(server_class: str) -> None:
    # The server is the test process' own child: once it has exited it is a zombie until reaped, and a zombie
    # still takes signals. A stop that took that for a live server waited out its whole grace period every time.
    from support import servers

    server = getattr(servers, server_class)()
    server.stop_grace_s = 600.0  # far beyond the join below: only a stop that sees the shutdown returns in time
    server.start(timeout=60)
    stopping = threading.Thread(target=server.stop, daemon=True)
    try:
        stopping.start()
        stopping.join(60)
        assert not stopping.is_alive(), f"{server_class}.stop() still waiting for a server that had shut down"
        assert server.process is not None
        assert server.process.returncode is not None
        assert server.process.returncode != -signal.SIGKILL  # its own shutdown on SIGINT, not the SIGKILL after
        assert not server.workdir.exists()
    finally:
        if stopping.is_alive() and server.process is not None:
            os.killpg(server.process.pid, signal.SIGKILL)
