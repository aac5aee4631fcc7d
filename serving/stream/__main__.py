"""``python -m serving.stream``: run the stream scorer (``make stream``, ``mlops stream``) until SIGTERM/SIGINT.

One process, its own ``/metrics`` (``STREAM_METRICS_PORT``): Prometheus multiprocess mode is switched off *before*
anything imports ``prometheus_client`` or Feast (see PITFALLS: Feast points the variable at a temp dir of its own;
the compose file sets it for the API's workers). Several scorers share a stream through the consumer group.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments (they override ``STREAM_*``) and run the scorer; exit 0 on a requested stop."""
    parser = argparse.ArgumentParser(prog="python -m serving.stream", description=__doc__.splitlines()[0])
    parser.add_argument("--consumer", help="this consumer's name in the group (default: host-pid)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics (0: none)")
    args = parser.parse_args(argv)
    if args.consumer:
        os.environ["STREAM_CONSUMER"] = args.consumer
    if args.metrics_port is not None:
        os.environ["STREAM_METRICS_PORT"] = str(args.metrics_port)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the API's workers: a few rows per model call

    from serving.stream.scorer import run  # after the environment is set: it imports prometheus_client

    return run()


if __name__ == "__main__":
    sys.exit(main())
