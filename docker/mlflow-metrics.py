#!/usr/bin/env python3
"""The MLflow server's Prometheus metrics on a port of their own, for Prometheus to scrape without credentials.

With the basic-auth app, the server's own ``/metrics`` answers only its admin (every route without a
permission check is refused to other accounts: MLflow's fail-closed default, kept on). The server writes its
metrics as multiprocess files (``mlflow server --expose-prometheus DIR``); this process, in a container of its
own that shares DIR read-only, serves them on ``MLFLOW_METRICS_PORT`` (default 9102), reachable from the
stack's network only. They hold request counts and latencies by endpoint and status, no data.

Environment: PROMETHEUS_MULTIPROC_DIR (default /home/mlflow/metrics), MLFLOW_METRICS_PORT.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def main() -> int:
    """Serve until SIGTERM or SIGINT."""
    directory = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR", "/home/mlflow/metrics"))
    port = int(os.environ.get("MLFLOW_METRICS_PORT", "9102"))
    if not directory.is_dir():
        print(f"mlflow-metrics: {directory} is not a directory", file=sys.stderr)  # noqa: T201
        return 1
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    start_http_server(port, addr="0.0.0.0", registry=registry)  # noqa: S104 - the container's own interface
    print(f"mlflow-metrics: serving {directory} on :{port}/metrics", file=sys.stderr)  # noqa: T201
    # PID 1 ignores signals it has no handler for: stop on SIGTERM/SIGINT.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
