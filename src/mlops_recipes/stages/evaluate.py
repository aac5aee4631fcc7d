"""evaluate: holdout metrics, curves and figures as DVC metrics/plots, logged to the same MLflow run and model.

Figures are drawn with matplotlib (``core/figures.py``), not with ``mlflow.models.evaluate``: see
docs/design.md ("Evaluation figures") for the measurement behind that choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops_recipes.contract import ACCOUNT_CREATED, EVENT_TIME, LABEL, TRANSACTION_ID
from mlops_recipes.core import segments
from mlops_recipes.core.figures import holdout_figures
from mlops_recipes.core.metrics import curves, holdout_metrics
from mlops_recipes.errors import MissingInputError
from mlops_recipes.io import plots_page, tracking
from mlops_recipes.io.figures import write_pngs
from mlops_recipes.io.files import read_json, read_parquet, write_json
from mlops_recipes.io.registry import METRIC_PREFIX
from mlops_recipes.params import EvaluateParams, Params
from mlops_recipes.settings import Settings

FIGURES_DIR = "figures"  # under plots/: the PNGs DVC shows as image plots
FIGURES_ARTIFACT = "figures"  # in the MLflow run
SEGMENTS_ARTIFACT = "holdout_segments.json"  # metrics per segment, in the MLflow run


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


def segment_labels(settings: Settings, params: Params, holdout: pd.DataFrame) -> pd.DataFrame:
    """Each holdout row's segment label per ``evaluate.segments``.

    Columns come from the validated transactions (the data contract: channel, account_created_at, amount, ...)
    or, failing that, from the holdout itself (a model feature).
    """
    # A segment over the account-creation date means nothing for data without one (contract: account_created null).
    without_account_date = not settings.contract().has_account_created
    specs = tuple(s for s in params.evaluate.segments if not (without_account_date and s.column == ACCOUNT_CREATED))
    if not specs:
        return pd.DataFrame(index=holdout.index)
    needed = {spec.column for spec in specs} | {EVENT_TIME}
    path = settings.validated_transactions
    if not path.is_file():
        raise MissingInputError(f"{path} not found; run the stage that writes it first (dvc repro)")
    import pyarrow.parquet as pq

    available = set(pq.read_schema(path).names)
    from_raw = sorted((needed & available) - {TRANSACTION_ID})
    raw = pd.read_parquet(path, columns=[TRANSACTION_ID, *from_raw])
    frame = holdout[[TRANSACTION_ID]].merge(raw, on=TRANSACTION_ID, how="left", validate="one_to_one")
    frame.index = holdout.index
    for column in needed - set(from_raw):
        if column in holdout:
            frame[column] = holdout[column]
    return segments.assign_all(frame, specs)


def segment_table(
    settings: Settings, params: Params, holdout: pd.DataFrame, scores: np.ndarray, *, labels: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Metrics per segment of scored holdout rows (see :func:`mlops_recipes.core.segments.segment_metrics`)."""
    if labels is None:
        labels = segment_labels(settings, params, holdout)
    return segments.segment_metrics(holdout[LABEL].to_numpy(), scores, labels, threshold=params.evaluate.threshold)


def _window(timestamps: pd.Series) -> str:
    return f"{timestamps.min():%Y-%m-%d %H:%M} to {timestamps.max():%Y-%m-%d %H:%M}"


def _data_window_tags(settings: Settings, holdout: pd.DataFrame) -> dict[str, str]:
    train = pd.read_parquet(settings.dataset_dir / "train.parquet", columns=[EVENT_TIME])
    return {
        "data.train_window": _window(train[EVENT_TIME]),
        "data.holdout_window": _window(holdout[EVENT_TIME]),
        "data.train_rows": str(len(train)),
        "data.holdout_rows": str(len(holdout)),
    }


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
    by_segment = segment_table(settings, params, holdout, scores)
    write_json(segments.as_document(by_segment), settings.segment_metrics_file)
    figures = holdout_figures(
        holdout[LABEL].to_numpy(),
        {"model": scores},
        threshold=params.evaluate.threshold,
        max_fpr=params.evaluate.max_fpr,
        bins=params.evaluate.calibration_bins,
        segments=by_segment,
    )
    figures_dir = plots_dir / FIGURES_DIR
    write_pngs(figures, figures_dir)
    plots_page.ensure(plots_dir / plots_page.PAGE_NAME)

    windows = _data_window_tags(settings, holdout)
    with mlflow.start_run(run_id=trained["run_id"]):
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
