"""Orchestration benchmarks: Prefect overhead on the retrain flow, batch-scoring throughput.

Runs on a fresh `git clone` of HEAD with default params (trained first), with the project's environment:

    uv run python bench/flows.py [--json PATH]

1. Retrain overhead: the retrain flow (against a running Prefect server with an existing home, as under
   `make flows`, and in ephemeral mode) minus the same pipeline call made directly; each in a fresh process.
2. Batch scoring: rows/s of the batch_score stage (point-in-time features + transformation + model) next to the
   model alone on the same rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the shared helpers of the tests and the benchmarks (tests/support)
from support.project import BIN_DIR as BIN  # noqa: E402
from support.project import clone_head, project_env  # noqa: E402
from support.servers import free_port  # noqa: E402


def _env(root: Path, **extra: str) -> dict[str, str]:
    """The project's environment with a Prefect home of its own (and no inherited Prefect setting)."""
    return project_env(root, drop=("PREFECT_",), PREFECT_HOME=str(root / ".prefect"), **extra)


def _timed(code: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def _median(code: str, env: dict[str, str], cwd: Path, repeats: int) -> float:
    return statistics.median(_timed(code, env, cwd) for _ in range(repeats))


def _start_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    env = _env(root, PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port))
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("Prefect server did not start")


def run(repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-flows-") as tmp:
        root = Path(tmp) / "project"
        clone_head(root)
        subprocess.run([str(BIN / "dvc"), "repro", "-q"], cwd=root, env=_env(root), check=True)

        direct = (
            "from mlops_recipes.settings import Settings\n"
            "from mlops_recipes.io.pipeline import reproduce\n"
            "reproduce(Settings(), force=['ingest'])\n"
        )
        flow = "from flows.retrain import retrain; retrain(refresh_data=True)"
        results["direct_s"] = _median(direct, _env(root), root, repeats)

        port = free_port()
        server = _start_server(root, port)
        try:
            served = _env(root, PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
            _timed(flow, served, root)  # first run registers the flow
            results["flow_server_s"] = _median(flow, served, root, repeats)
        finally:
            server.terminate()
            server.wait(30)
        results["flow_ephemeral_s"] = _median(flow, _env(root), root, repeats)

        batch = (
            "import time, json, numpy as np\n"
            "from mlops_recipes.settings import Settings\n"
            "from mlops_recipes.stages import batch_score\n"
            "from mlops_recipes.io import feature_store, models\n"
            "from mlops_recipes.model_inputs import offline_rows\n"
            "from mlops_recipes.io.files import read_parquet\n"
            "s = Settings(); out = s.path('data/predictions/bench.parquet')\n"
            "t = time.perf_counter(); r = batch_score.run(s, output=out); stage = time.perf_counter() - t\n"
            "m = models.load_alias(s, 'champion'); frame = read_parquet(s.validated_transactions)\n"
            "inputs = offline_rows(feature_store.open_store(s), frame, m.feature_service, s.contract())\n"
            "x = inputs[list(m.features)].to_numpy()\n"
            "t = time.perf_counter(); m.predict(x); model = time.perf_counter() - t\n"
            "print(json.dumps({'rows': r['rows'], 'stage_s': stage, 'model_s': model}))\n"
        )
        output = subprocess.run(
            [sys.executable, "-c", batch], env=_env(root), cwd=root, check=True, capture_output=True, text=True
        )
        results["batch"] = json.loads(output.stdout.strip().splitlines()[-1])
    return results


def report(results: dict[str, Any]) -> str:
    batch = results["batch"]
    direct = results["direct_s"]
    return "\n".join(
        [
            "| measurement | ours | baseline (same run) |",
            "|---|---|---|",
            f"| retrain flow, Prefect server running (no-change refresh) | {results['flow_server_s']:.1f} s, "
            f"overhead {results['flow_server_s'] - direct:.1f} s | pipeline called directly: {direct:.1f} s |",
            f"| retrain flow, ephemeral Prefect (no server) | {results['flow_ephemeral_s']:.1f} s, "
            f"overhead {results['flow_ephemeral_s'] - direct:.1f} s | pipeline called directly: {direct:.1f} s |",
            f"| batch scoring ({batch['rows']:,} rows: features + transformation + model) | "
            f"{batch['rows'] / batch['stage_s']:,.0f} rows/s "
            f"| model alone on the same rows: {batch['rows'] / batch['model_s']:,.0f} rows/s |",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = run(args.repeats)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
