"""evaluate: holdout metrics, curves and figures as DVC metrics/plots, logged to the same MLflow run and model.

Figures are drawn with matplotlib (``core/figures.py``), not with ``mlflow.models.evaluate``: see
docs/design.md ("Evaluation figures") for the measurement behind that choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops_recipes.contract import LABEL
from mlops_recipes.core.figures import holdout_figures
from mlops_recipes.core.metrics import curves, holdout_metrics
from mlops_recipes.io import plots_page, tracking
from mlops_recipes.io.figures import write_pngs
from mlops_recipes.io.files import read_json, read_parquet, write_json
from mlops_recipes.io.registry import METRIC_PREFIX
from mlops_recipes.params import EvaluateParams, Params
from mlops_recipes.settings import Settings

FIGURES_DIR = "figures"  # under plots/: the PNGs DVC shows as image plots
FIGURES_ARTIFACT = "figures"  # in the MLflow run


def score_holdout(model_uri: str, holdout: pd.DataFrame) -> np.ndarray:
    """Fraud probabilities of a logged model on the holdout, using the model's own signature columns."""
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    columns = info.signature.inputs.input_names() if info.signature is not None else None
    if not columns:
        raise ValueError(f"model {model_uri} has no input signature; cannot select its features")
    missing = sorted(set(columns) - set(holdout.columns))
    if missing:
        raise KeyError(f"holdout lacks features the model {model_uri} needs: {missing}")
    model = mlflow.sklearn.load_model(model_uri)
    return np.asarray(model.predict_proba(holdout[columns].to_numpy(dtype="float64"))[:, 1])


def compute(holdout: pd.DataFrame, scores: np.ndarray, params: EvaluateParams) -> dict[str, float]:
    """Scalar metrics of scored holdout rows."""
    return holdout_metrics(
        holdout[LABEL].to_numpy(),
        scores,
        max_fpr=params.max_fpr,
        top_k=params.top_k,
        threshold=params.threshold,
        bins=params.calibration_bins,
    )


def run(settings: Settings, params: Params) -> dict[str, Any]:
    """Write ``metrics/holdout.json`` and ``plots/*.csv``; log both to the training run."""
    import mlflow

    trained = read_json(settings.train_run_file)
    holdout = read_parquet(settings.dataset_dir / "holdout.parquet")
    tracking.configure(settings)
    scores = score_holdout(trained["model_uri"], holdout)
    metrics = compute(holdout, scores, params.evaluate)
    tables = curves(
        holdout[LABEL].to_numpy(), scores, threshold=params.evaluate.threshold, bins=params.evaluate.calibration_bins
    )
    plots_dir = settings.path(settings.plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(plots_dir / f"{name}.csv", index=False)
    write_json({k: round(v, 6) for k, v in metrics.items()}, settings.holdout_metrics_file)
    figures = holdout_figures(
        holdout[LABEL].to_numpy(),
        {"model": scores},
        threshold=params.evaluate.threshold,
        max_fpr=params.evaluate.max_fpr,
        bins=params.evaluate.calibration_bins,
    )
    figures_dir = plots_dir / FIGURES_DIR
    write_pngs(figures, figures_dir)
    plots_page.ensure(plots_dir / plots_page.PAGE_NAME)

    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({f"{METRIC_PREFIX}{k}": v for k, v in metrics.items()}, model_id=trained["model_id"])
        for name in tables:
            mlflow.log_artifact(str(plots_dir / f"{name}.csv"), artifact_path="holdout_plots")
        # PNGs under the run: the MLflow UI previews them in the run's Artifacts tab.
        mlflow.log_artifacts(str(figures_dir), artifact_path=FIGURES_ARTIFACT)
    return {"stage": "evaluate", "metrics": {k: round(v, 4) for k, v in metrics.items()}}
