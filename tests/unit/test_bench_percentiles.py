"""bench/serving.py: the p99 of several load runs together, merged from each run's tail percentiles.

The update's benchmark states its p99 target on that figure, so it must be the percentile of all the runs'
requests, not a max or a mean of the runs' own percentiles.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serving.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_serving_under_test", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def _run(bench: ModuleType, latencies_ms: np.ndarray) -> object:
    tail = [float(np.percentile(latencies_ms, level)) for level in bench.TAIL_LEVELS]
    return bench.LoadResult(len(latencies_ms), 2.0, float(np.median(latencies_ms)), tail[-1], 0, {"tail_ms": tail})


def test_the_merged_p99_is_that_of_all_the_runs_requests(bench: ModuleType) -> None:
    rng = np.random.default_rng(7)
    # Eight turns, one of them slow throughout (a spell of the machine), and of different sizes.
    turns = [rng.lognormal(2.0 + (0.8 if n == 3 else 0.05 * n), 0.3, 1_000 + 300 * n) for n in range(8)]

    merged = bench.merged_percentile([_run(bench, t) for t in turns], 99.0)

    everything = np.concatenate(turns)
    assert merged == pytest.approx(float(np.percentile(everything, 99)), rel=0.01)
    assert merged < max(float(np.percentile(t, 99)) for t in turns)  # not the worst turn's


def test_one_run_merged_is_its_own_p99(bench: ModuleType) -> None:
    latencies = np.random.default_rng(3).exponential(5.0, 4_000)

    merged = bench.merged_percentile([_run(bench, latencies)], 99.0)

    assert merged == pytest.approx(float(np.percentile(latencies, 99)), rel=1e-3)
