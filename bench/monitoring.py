"""Cost of the service's model and data monitoring, next to the model call it rides along with.

    uv run python bench/monitoring.py

Measured in one process, on the real classes: the per-request work (rows into the drift window, the score
remembered by transaction id for a label later), the timer's PSI over a full window, and matching a label.
The baseline is the default model family (histogram gradient boosting, 200 iterations) scoring one row, which
every request pays anyway. No service, store or network: those would only add the same noise to both sides.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# `python bench/monitoring.py` puts bench/ first on the path, where bench/serving.py would shadow the package: the
# repository root takes its place, as the project folder the shells run from (they are not installed).
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent), *(entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH)]

WINDOW = 2_000  # SERVING_DRIFT_WINDOW_ROWS default


def per_call(function: Callable[[int], object], calls: int, repeats: int = 5) -> float:
    """Median seconds per call of ``function(i)`` over ``repeats`` timed loops."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(calls):
            function(i)
        timings.append((time.perf_counter() - started) / calls)
    return statistics.median(timings)


def main() -> None:
    """Print each figure with the baseline and the share it adds."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from mlops_recipes.contract import demo_contract
    from mlops_recipes.core.drift import DriftReference
    from mlops_recipes.core.request_features import model_features
    from mlops_recipes.io.models import LoadedModel
    from serving.metrics import ServiceMetrics
    from serving.monitoring import LiveMonitor

    rng = np.random.default_rng(0)
    MODEL_FEATURES = model_features(demo_contract())
    width = len(MODEL_FEATURES)
    train = rng.normal(size=(20_000, width))
    labels = (train[:, 0] + rng.normal(size=20_000) > 2).astype(int)
    estimator = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(train, labels)
    reference = DriftReference.build(train, MODEL_FEATURES, estimator.predict_proba(train)[:, 1])
    model = LoadedModel(
        uri="models:/fraud-detector/1",
        features=MODEL_FEATURES,
        estimator=estimator,
        name="fraud-detector",
        version="1",
        run_id=None,
        feature_service="fraud_model_v1",
        threshold=0.5,
        drift_reference=reference,
    )
    monitor = LiveMonitor(ServiceMetrics.create(), window_rows=WINDOW, min_rows=500, remembered_scores=100_000)
    row = rng.normal(size=(1, width))
    score = np.array([0.1])

    model_call = per_call(lambda _: model.predict(row), 2_000)
    observe = per_call(lambda i: monitor.observe(model, row, score, [False], [f"tx-{i}"]), 20_000)
    observe_no_id = per_call(lambda _: monitor.observe(model, row, score, [False], [None]), 20_000)
    publish = per_call(lambda _: monitor.publish_drift(), 50)
    label = per_call(lambda i: monitor.label([(f"tx-{i}", False)]), 10_000, repeats=1)

    print(f"{'baseline: model call, 1 row':44s} {model_call * 1e6:8.1f} µs")
    print(f"{'per request: observe, with transaction_id':44s} {observe * 1e6:8.1f} µs  (+{observe / model_call:.1%})")
    print(
        f"{'per request: observe, without id':44s} {observe_no_id * 1e6:8.1f} µs  (+{observe_no_id / model_call:.1%})"
    )
    print(f"{'per label: /feedback matching':44s} {label * 1e6:8.1f} µs")
    print(f"{f'per timer tick: PSI over {WINDOW} rows x {width}':44s} {publish * 1e3:8.2f} ms  (every 10 s by default)")


if __name__ == "__main__":
    main()
