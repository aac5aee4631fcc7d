"""evaluate: holdout metrics, curves and figures as DVC metrics/plots, logged to the same MLflow run and model.

Figures are drawn with matplotlib (``core/figures.py``), not with ``mlflow.models.evaluate``: see
docs/design.md ("Evaluation figures") for the measurement behind that choice.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlops_recipes.contract import EVENT_TIME, LABEL
from mlops_recipes.core import segments
from mlops_recipes.core.figures import holdout_figures
from mlops_recipes.core.metrics import curves
from mlops_recipes.io import holdout, plots_page, tracking
from mlops_recipes.io.figures import write_pngs
from mlops_recipes.io.files import read_json, write_json
from mlops_recipes.io.models import load_logged
from mlops_recipes.io.registry import METRIC_PREFIX
from mlops_recipes.params import Params
from mlops_recipes.settings import Settings

FIGURES_DIR = "figures"  # under plots/: the PNGs DVC shows as image plots
FIGURES_ARTIFACT = "figures"  # in the MLflow run
SEGMENTS_ARTIFACT = "holdout_segments.json"  # metrics per segment, in the MLflow run


def _window(timestamps: pd.Series) -> str:
    return f"{timestamps.min():%Y-%m-%d %H:%M} to {timestamps.max():%Y-%m-%d %H:%M}"


def _data_window_tags(settings: Settings, holdout_frame: pd.DataFrame) -> dict[str, str]:
    train = pd.read_parquet(settings.dataset_dir / "train.parquet", columns=[EVENT_TIME])
    return {
        "data.train_window": _window(train[EVENT_TIME]),
        "data.holdout_window": _window(holdout_frame[EVENT_TIME]),
        "data.train_rows": str(len(train)),
        "data.holdout_rows": str(len(holdout_frame)),
    }


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Write ``metrics/holdout.json`` and ``plots/*.csv``; log both to the training run.

    The candidate decides at ``evaluate.threshold``: the register stage records that same value on its version,
    so these metrics are the ones of the threshold production uses.
    """
    import mlflow

    trained = read_json(settings.train_run_file)
    holdout_frame = holdout.read(settings)
    threshold = params.evaluate.threshold
    scores = load_logged(settings, trained["model_id"]).score_frame(holdout_frame)
    metrics = holdout.metrics(holdout_frame, scores, params.evaluate, threshold=threshold)
    labels = holdout_frame[LABEL].to_numpy()
    tables = curves(labels, scores, threshold=threshold, bins=params.evaluate.calibration_bins)
    plots_dir = settings.path(settings.plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(plots_dir / f"{name}.csv", index=False)
    write_json({k: round(v, 6) for k, v in metrics.items()}, settings.holdout_metrics_file)
    by_segment = holdout.segment_table(settings, params, holdout_frame, scores, threshold=threshold)
    write_json(segments.as_document(by_segment), settings.segment_metrics_file)
    figures = holdout_figures(
        labels,
        {"model": scores},
        threshold=threshold,
        max_fpr=params.evaluate.max_fpr,
        bins=params.evaluate.calibration_bins,
        segments=by_segment,
    )
    figures_dir = plots_dir / FIGURES_DIR
    write_pngs(figures, figures_dir)
    plots_page.ensure(plots_dir / plots_page.PAGE_NAME)

    windows = _data_window_tags(settings, holdout_frame)
    with tracking.fluent(settings), mlflow.start_run(run_id=trained["run_id"]):
        mlflow.set_tags(windows)  # what the model card reports as the data window
        mlflow.log_metrics({f"{METRIC_PREFIX}{k}": v for k, v in metrics.items()}, model_id=trained["model_id"])
        mlflow.log_metrics(segments.mlflow_metrics(by_segment), model_id=trained["model_id"])
        mlflow.log_dict(segments.as_document(by_segment), SEGMENTS_ARTIFACT)
        for name in tables:
            mlflow.log_artifact(str(plots_dir / f"{name}.csv"), artifact_path="holdout_plots")
        # PNGs under the run: the MLflow UI previews them in the run's Artifacts tab.
        mlflow.log_artifacts(str(figures_dir), artifact_path=FIGURES_ARTIFACT)
    return {
        "stage": "evaluate",
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "segments": len(by_segment),
    }
