"""``python -m serving``: start the service under uvicorn (``make serve``).

Sets up Prometheus multiprocess mode *before* anything imports ``prometheus_client`` or Feast, so metrics
are correct with any number of workers (see PITFALLS: Feast points the variable at a temp dir of its own).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def _prepare_metrics_dir() -> Path:
    """A fresh multiprocess directory: stale files of a previous run would add up into this one's metrics."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    directory = Path(configured) if configured else Path(tempfile.gettempdir()) / f"mlops-serving-metrics-{os.getpid()}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def _stopped(signum: int, frame: object) -> None:
    """A requested stop is a clean exit."""
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run uvicorn until SIGTERM/SIGINT; in-flight requests finish first."""
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("SERVING_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SERVING_PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("SERVING_WORKERS", "1")))
    parser.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds to finish in-flight requests")
    args = parser.parse_args(argv)

    _prepare_metrics_dir()
    # One OpenMP thread per worker process (unless set): the model scores a few rows per call, so OpenMP's team of
    # spinning threads per calling thread only competed with the other requests (CPU per request 3.0 -> 1.7 ms at
    # 8 clients, bench/serving.py). Must be set before scikit-learn's OpenMP runtime loads; workers inherit it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # A single uvicorn server re-raises SIGTERM to the handler it found once its graceful shutdown is done: with
    # the default handler the process then dies of the signal (status 143, a failure to process managers) where
    # it exits 0 with several workers. This handler makes the completed stop exit 0 in both cases.
    signal.signal(signal.SIGTERM, _stopped)
    import uvicorn  # after the metrics directory is set: uvicorn workers import the app, then prometheus_client

    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,  # the app configures JSON logging itself
        access_log=False,
        timeout_graceful_shutdown=int(args.graceful_timeout),
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
