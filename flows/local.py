"""``make flows``: a local Prefect server, the deployments of ``flows/prefect.yaml`` and a process worker.

The server's UI is at http://127.0.0.1:4200 (``--port``). Schedules fire while this runs; trigger a run by
hand from the UI (Deployments → Run) or with ``uv run prefect deployment run retrain/retrain-weekly`` with
``PREFECT_API_URL`` set as printed. Ctrl-C stops the worker and the server; Prefect's database stays in
``.prefect/`` (delete it to start over).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

POOL = "mlops-process"
MONITOR_DEPLOYMENT = "monitor/monitor-every-15m"


def _prefect(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(Path(sys.executable).parent / "prefect"), *args], env=env, check=True)  # noqa: S603


def _wait_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - our loopback URL
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the Prefect server did not become healthy at {url} within {timeout:.0f} s")


def _pause_monitor_without_prometheus(env: dict[str, str]) -> None:
    """Pause the monitor deployment when no Prometheus answers: it would fail every 15 minutes otherwise."""
    prometheus = env.get("MLOPS_PROMETHEUS_URL", "http://127.0.0.1:9090")
    try:
        with urllib.request.urlopen(f"{prometheus}/-/ready", timeout=2):  # noqa: S310 - the operator's URL
            return
    except OSError:
        pass
    os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.pause_deployment(client.read_deployment_by_name(MONITOR_DEPLOYMENT).id)
    print(  # noqa: T201
        f"{MONITOR_DEPLOYMENT} is paused: no Prometheus at {prometheus} (MLOPS_PROMETHEUS_URL). Start one, "
        "then resume the deployment in the UI to close the loop (docs/monitoring.md).",
        flush=True,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Start server and worker, deploy, then wait until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m flows.local", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    root = args.project_root.resolve()
    api = f"http://127.0.0.1:{args.port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(args.port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "MLOPS_PROJECT_ROOT": str(root),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    prefect = str(Path(sys.executable).parent / "prefect")
    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(subprocess.Popen([prefect, "server", "start"], env=env))  # noqa: S603
        _wait_healthy(api, timeout=120)
        _prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
        _prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(root / "flows" / "prefect.yaml"), env=env)
        _pause_monitor_without_prometheus(env)
        children.append(subprocess.Popen([prefect, "worker", "start", "--pool", POOL], env=env, cwd=root))  # noqa: S603
        print(  # noqa: T201
            f"\nPrefect UI: http://127.0.0.1:{args.port}\n"
            f"Run a flow now: PREFECT_API_URL={api} uv run prefect deployment run retrain/retrain-weekly\n"
            "Ctrl-C stops the worker and the server.\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)
        while all(child.poll() is None for child in children):
            time.sleep(1)
        return 1  # a child died on its own
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()


if __name__ == "__main__":
    sys.exit(main())
