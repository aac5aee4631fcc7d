"""Pipeline benchmarks: cold run, no-op repro next to `dvc status`, and 1x / 10x data with peak memory.

Runs on a fresh `git clone` of the current commit (HEAD, not uncommitted changes) in a temporary folder, with
the project's own locked environment. Prints one table; `docs/benchmarks.md` records the figures.

    uv run python bench/pipeline.py [--scales 1 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the shared helpers of the tests and the benchmarks (tests/support)
from support.project import clone_head, project_env  # noqa: E402

STAGES = ("ingest", "validate", "features", "dataset", "train", "evaluate", "register")
# Measures one child command: wall seconds and the peak RSS of its whole process tree (waited-for children).
_TIMER = (
    "import resource, subprocess, sys, time, json\n"
    "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode; wall = time.perf_counter() - t\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(json.dumps({'rc': rc, 'wall_s': wall, 'peak_mb': peak}), file=sys.stderr)\n"
)


def measure(cmd: list[str], cwd: Path) -> dict[str, float]:
    """Wall time and peak memory (MB) of ``cmd`` run in ``cwd``; fails loudly if the command fails."""
    result = subprocess.run(
        [sys.executable, "-c", _TIMER, *cmd], cwd=cwd, env=project_env(cwd), capture_output=True, text=True, check=False
    )
    figures: dict[str, float] = json.loads(result.stderr.strip().splitlines()[-1])
    if figures["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return figures


def clone(target: Path, *, scale: int = 1) -> Path:
    """A fresh clone of HEAD, with the data size multiplied by ``scale`` (more customers and merchants)."""
    clone_head(target)
    params_path = target / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["data"]["n_customers"] *= scale
    params["data"]["n_merchants"] *= scale
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def median_of(cmd: list[str], cwd: Path, repeats: int) -> float:
    return statistics.median(measure(cmd, cwd)["wall_s"] for _ in range(repeats))


def run(scales: list[int], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        root = Path(tmp)
        import_floor = measure([sys.executable, "-c", "import feast, mlflow.sklearn, sklearn.ensemble, pandas"], root)
        results["import_floor_s"] = import_floor["wall_s"]

        cold_dir = clone(root / "cold")
        cold = measure(["dvc", "repro"], cold_dir)
        results["cold_repro"] = cold
        results["noop_repro_s"] = median_of(["dvc", "repro"], cold_dir, repeats)
        results["dvc_status_s"] = median_of(["dvc", "status"], cold_dir, repeats)

        for scale in scales:
            work = clone(root / f"x{scale}", scale=scale)
            stages = {stage: measure(["mlops", stage], work) for stage in STAGES}
            rows = pq.ParquetFile(work / "data/raw/transactions.parquet").metadata.num_rows
            results[f"x{scale}"] = {
                "rows": rows,
                "total_s": sum(s["wall_s"] for s in stages.values()),
                "peak_mb": max(s["peak_mb"] for s in stages.values()),
                "stages": stages,
            }
    return results


def report(results: dict[str, Any]) -> str:
    ratio = results["noop_repro_s"] / results["dvc_status_s"]
    lines = [
        "| measurement | ours | baseline (same run) |",
        "|---|---|---|",
        f"| cold `dvc repro` (whole pipeline, fresh clone) | {results['cold_repro']['wall_s']:.1f} s, "
        f"peak {results['cold_repro']['peak_mb']:.0f} MB | import floor of one stage process: "
        f"{results['import_floor_s']:.1f} s |",
        f"| no-op `dvc repro` (median) | {results['noop_repro_s']:.2f} s "
        f"| `dvc status`: {results['dvc_status_s']:.2f} s (ratio {ratio:.2f}x) |",
    ]
    for key, scale in ((k, k[1:]) for k in results if k.startswith("x")):
        entry = results[key]
        stage_times = ", ".join(f"{name} {s['wall_s']:.1f}" for name, s in entry["stages"].items())
        lines.append(
            f"| pipeline at {scale}x data ({entry['rows']:,} transactions) | {entry['total_s']:.1f} s, "
            f"peak {entry['peak_mb']:.0f} MB | per stage (s): {stage_times} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    results = run(args.scales, args.repeats)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
