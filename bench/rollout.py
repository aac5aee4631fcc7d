"""Rollout benchmark: the champion's `/predict` throughput and p99 with a shadow candidate at 100 % vs no rollout.

Two copies of one trained project (the same champion, the same online store), one service each, one worker:
in copy B the champion's model is registered again as version 2 and rolled out in shadow at 100 % (`mlops rollout
start --mode shadow`), so every request is also scored by the candidate off the response path; copy A has no
rollout. The two services are loaded in turns (A B B A ..., 2 s each, 8 keep-alive clients, the load generator of
bench/serving.py) so that a busy machine hits both alike. Targets (issue 15): throughput drop <= 10 %, p99 <= 1.2x.

    uv run python bench/rollout.py --project TRAINED_PROJECT [--duration 20] [--json PATH]

``--project`` is a folder after `dvc repro` (e.g. the clone bench/serving.py makes, or your checkout after
`make run`); it is copied, never changed. Without it, HEAD is cloned and trained first.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_serving", BENCH / "serving.py")
bench_serving = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["bench_serving"] = bench_serving
_spec.loader.exec_module(bench_serving)  # type: ignore[union-attr]

MODEL_NAME = "fraud-detector"


def register_candidate(root: Path) -> str:
    """The champion's model registered again in ``root``'s registry: a candidate that scores like it."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    source = client.get_model_version_download_uri(MODEL_NAME, champion.version)
    created = client.create_model_version(MODEL_NAME, source=source, run_id=champion.run_id, tags=champion.tags)
    return str(created.version)


def shadow_figures(server: Any) -> dict[str, float]:
    """What the shadow candidate did during the run, from the service's /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rollout_scored_rows_total" and sample.labels["variant"] == "candidate":
                figures[f"candidate_{sample.labels['outcome']}"] = sample.value
            if sample.name == "rollout_shadow_dropped_total":
                figures[f"dropped_{sample.labels['reason']}"] = sample.value
            if sample.name == "rollout_shadow_compared_total":
                figures["compared"] = sample.value
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"cpus": os.cpu_count(), "duration_s": args.duration}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-rollout-") as tmp, contextlib.ExitStack() as cleanup:
        work = Path(tmp)
        trained = work / "trained"
        if args.project:
            shutil.copytree(args.project.resolve(), trained, ignore=shutil.ignore_patterns("service-*.log", ".venv"))
        else:
            print("preparing a trained clone of HEAD ...", file=sys.stderr)
            bench_serving.prepare(trained, worktree=False)
        roots = {"no_rollout": work / "a", "shadow_100": work / "b"}
        for root in roots.values():
            shutil.copytree(trained, root, symlinks=True)
        candidate = register_candidate(roots["shadow_100"])
        env_b = bench_serving.project_env(roots["shadow_100"])
        subprocess.run(
            ["mlops", "rollout", "start", "--version", candidate, "--mode", "shadow", "--percent", "100"],
            cwd=roots["shadow_100"],
            env=env_b,
            check=True,
            capture_output=True,
        )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        body = json.dumps({**bench_serving.TRANSACTION, "event_timestamp": now.isoformat()}).encode()
        servers = {}
        for name, root in roots.items():
            port = bench_serving.free_port()
            servers[name] = bench_serving.start(
                name,
                [sys.executable, "-m", "serving", "--port", str(port), "--workers", "1"],
                cwd=root,
                env={**bench_serving.project_env(root), "SERVING_UPDATE_CUSTOMER_FEATURES": "false"},
                port=port,
                path="/predict",
                body=body,
                logs=work,
            )
            cleanup.callback(servers[name].stop)
        # The shadow service follows the record within its poll (10 s by default) after start-up.
        deadline = time.monotonic() + 60
        while shadow_figures(servers["shadow_100"]).get("candidate_ok", 0) == 0:
            if time.monotonic() > deadline:
                raise SystemExit("the shadow candidate never scored: is the rollout record there?")
            bench_serving.post(servers["shadow_100"].port, "/predict", body)
            time.sleep(0.2)
        if servers["no_rollout"].first_response != servers["shadow_100"].first_response:
            raise SystemExit("the two services answer differently: the comparison would be unfair")

        load = bench_serving.LoadGenerator(args.load_tool, work)
        results["load_tool"] = load.note
        results["loadavg_before"] = os.getloadavg()
        for server in servers.values():  # warm-up
            load.run(server, 8, 2)
        before = shadow_figures(servers["shadow_100"])
        measured = bench_serving.interleaved(load, servers["no_rollout"], servers["shadow_100"], 8, args.duration)
        after = shadow_figures(servers["shadow_100"])
        results["loadavg_after"] = os.getloadavg()
        results["runs"] = {
            name: {
                "rps": result.rps,
                "p50_ms": result.p50_ms,
                "p99_ms": result.p99_ms,
                "errors": result.errors,
                **result.extra,
            }
            for name, result in measured.items()
        }
        results["shadow"] = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    return results


def report(results: dict[str, Any]) -> str:
    base, shadow = results["runs"]["no_rollout"], results["runs"]["shadow_100"]
    drop = 1 - shadow["rps"] / base["rps"]
    ratio = shadow["p99_ms"] / base["p99_ms"]
    figures = results["shadow"]
    scored = figures.get("candidate_ok", 0)
    dropped = figures.get("dropped_queue_full", 0)
    lines = [
        "| measurement | shadow 100 % | no rollout (same run) | target | verdict |",
        "|---|---|---|---|---|",
        f"| throughput, 1 worker, 8 clients | {shadow['rps']:,.0f} req/s | {base['rps']:,.0f} req/s | drop <= 10 % | "
        f"{drop:.1%}, {'met' if drop <= 0.10 else '**missed**'} |",
        f"| p99 | {shadow['p99_ms']:.1f} ms | {base['p99_ms']:.1f} ms | <= 1.2x | "
        f"{ratio:.2f}x, {'met' if ratio <= 1.2 else '**missed**'} |",
        f"| p50 | {shadow['p50_ms']:.1f} ms | {base['p50_ms']:.1f} ms | | |",
        f"| server CPU per request | {shadow['cpu_us_per_request']:,.0f} us "
        f"| {base['cpu_us_per_request']:,.0f} us | | |",
        f"| shadow rows scored / dropped (queue full) | {scored:,.0f} / {dropped:,.0f} | | | |",
        "",
        f"load: {results['load_tool']}; load average before {results['loadavg_before'][0]:.1f}, "
        f"after {results['loadavg_after'][0]:.1f}; {results['cpus']} CPUs; "
        f"{results['duration_s']} s per service in 2 s turns",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a trained project folder to copy (default: clone and train)")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per service (default 20)")
    parser.add_argument("--load-tool", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
