"""Holdout metrics that matter for fraud, and the curves behind them (DVC plots)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

_MAX_CURVE_POINTS = 400


def recall_at_fpr(y_true: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    """Highest recall reachable while the false-positive rate stays at or below ``max_fpr``."""
    # Keep every threshold: the default drops collinear points, which with tied scores are reachable operating
    # points (and can be the best one under the bound).
    fpr, tpr, _ = roc_curve(y_true, scores, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr].max())


def precision_at_k(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of fraud among the ``k`` highest scores (what an analyst queue of size k would catch)."""
    k = min(k, len(scores))
    top = np.argsort(-scores, kind="stable")[:k]
    return float(np.mean(y_true[top]))


def expected_calibration_error(y_true: np.ndarray, scores: np.ndarray, bins: int) -> float:
    """Mean |observed rate - mean score| over equal-width score bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(y_true[mask].mean() - scores[mask].mean())
    return float(error)


def holdout_metrics(
    y_true: np.ndarray, scores: np.ndarray, *, max_fpr: float, top_k: int, threshold: float, bins: int
) -> dict[str, float]:
    """All scalar metrics of one scored holdout."""
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(np.unique(y_true)) < 2:
        raise ValueError("holdout needs both classes to compute ranking metrics")
    predicted = scores >= threshold
    _, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "pr_auc": float(average_precision_score(y_true, scores)),
        "recall_at_fpr": recall_at_fpr(y_true, scores, max_fpr),
        "precision_at_k": precision_at_k(y_true, scores, top_k),
        "precision_at_threshold": float(tp / (tp + fp)) if tp + fp else 0.0,
        "recall_at_threshold": float(tp / (tp + fn)) if tp + fn else 0.0,
        "brier": float(brier_score_loss(y_true, scores)),
        "log_loss": float(log_loss(y_true, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "ece": expected_calibration_error(y_true, scores, bins),
        "fraud_rate": float(y_true.mean()),
        "rows": float(len(y_true)),
    }


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= _MAX_CURVE_POINTS:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, _MAX_CURVE_POINTS).astype(int))
    return frame.iloc[keep]


def calibration_table(y_true: np.ndarray, scores: np.ndarray, *, bins: int) -> pd.DataFrame:
    """Per equal-width score bin (non-empty bins only): mean score, observed fraud rate and row count."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    return (
        pd.DataFrame({"bin": which, "score": scores, "label": y_true})
        .groupby("bin")
        .agg(mean_score=("score", "mean"), observed_rate=("label", "mean"), count=("label", "size"))
        .reset_index()
    )


def curves(y_true: np.ndarray, scores: np.ndarray, *, threshold: float, bins: int) -> dict[str, pd.DataFrame]:
    """ROC, precision-recall and calibration curves, and the confusion rows, as DVC plot tables."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    precision, recall, _ = precision_recall_curve(y_true, scores)
    calibration = calibration_table(y_true, scores, bins=bins)
    return {
        "roc": _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr})),
        "precision_recall": _thin(pd.DataFrame({"recall": recall, "precision": precision})),
        "calibration": calibration,
        "confusion": pd.DataFrame(
            {
                "actual": np.where(y_true == 1, "fraud", "legit"),
                "predicted": np.where(scores >= threshold, "fraud", "legit"),
            }
        ),
    }
