"""Stops a test server when the test process that started it dies, however it dies (SIGKILL included).

Started by :mod:`support.servers` as ``python watchdog.py PID_FILE...`` with one end of a pipe on its standard
input; the test process holds the other end. When that process exits, the kernel closes its end, the read below
returns EOF, and the watchdog terminates every server group named in the pid files and removes their
directories. A server stopped normally removes its own pid file first, so the watchdog then has nothing to do.
It runs in a session of its own: a Ctrl-C in the terminal reaches pytest (which stops the servers itself),
never the watchdog.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but belongs to another user (the unprivileged server user under root)
        return True
    return True


def stop_group(pid: int, *, grace_s: float = 5.0, ended: Callable[[], bool] | None = None) -> None:
    """SIGINT the process group led by ``pid``, SIGKILL what is left after ``grace_s`` or once the leader ended.

    SIGINT, not SIGTERM: it is PostgreSQL's *fast* shutdown (SIGTERM waits for every client to disconnect),
    and Redis treats both alike. ``ended``: whether the leader has exited, for a caller whose child it is. An
    exited child stays a zombie until its parent reaps it, and a zombie still takes signals, so without it every
    stop waited out the whole grace period (10 s a server at each test run's end; under load the interrupted
    run of test_test_servers then outlasted its 60 s).
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGINT)
    gone = ended if ended is not None else (lambda: not _alive(pid))
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not gone():
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # what is left of the group (a leader that ignored SIGINT, its children)


def main(pid_files: list[str]) -> int:
    """Block until the parent's end of the pipe closes, then clean up after every server still recorded."""
    sys.stdin.buffer.read()  # EOF: the test process is gone
    for name in pid_files:
        pid_file = Path(name)
        try:
            pid = int(pid_file.read_text())
        except (FileNotFoundError, ValueError):
            continue  # stopped normally
        stop_group(pid)
        shutil.rmtree(pid_file.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
