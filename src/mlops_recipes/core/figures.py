"""Holdout figures: ROC, precision-recall, calibration, score distribution, confusion, segments.

Pure drawing on in-memory arrays: every function returns a matplotlib ``Figure`` bound to the Agg canvas
(headless; no pyplot, so no global backend state and no window). Writing PNG files is ``io/figures.py``'s
job. Each function takes ``scores`` as a mapping of model name to scores on the *same* rows, so one figure
draws one model (the evaluate stage) or a candidate beside the champion (``mlops compare``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlops_recipes.core.metrics import calibration_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Scores = Mapping[str, np.ndarray]

FIGURE_NAMES = ("roc", "precision_recall", "calibration", "score_distribution", "confusion")
_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")
_DPI = 100


def _figure(width: float = 6.0, height: float = 4.5, *, rows: int = 1, cols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # headless raster canvas, chosen here rather than through a global backend
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, [ax for row in axes for ax in row]


def _color(index: int) -> str:
    return _COLORS[index % len(_COLORS)]


def roc_figure(y_true: np.ndarray, scores: Scores, *, threshold: float, max_fpr: float) -> Figure:
    """ROC curve per model, with the operating point at ``threshold`` and the ``max_fpr`` bound."""
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, (ax,) = _figure()
    negatives = max(int((y_true == 0).sum()), 1)
    positives = max(int((y_true == 1).sum()), 1)
    for i, (name, s) in enumerate(scores.items()):
        fpr, tpr, _ = roc_curve(y_true, s)
        ax.plot(fpr, tpr, color=_color(i), label=f"{name} (AUC {roc_auc_score(y_true, s):.3f})")
        hit = s >= threshold
        op_fpr = float((hit & (y_true == 0)).sum()) / negatives
        op_tpr = float((hit & (y_true == 1)).sum()) / positives
        ax.plot([op_fpr], [op_tpr], "o", color=_color(i), markeredgecolor="black")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.axvline(max_fpr, linestyle="--", color="grey", linewidth=0.8, label=f"max FPR {max_fpr:g}")
    ax.plot([], [], "o", color="white", markeredgecolor="black", label=f"threshold {threshold:g}")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC (holdout)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize="small")
    return figure


def precision_recall_figure(y_true: np.ndarray, scores: Scores, *, threshold: float) -> Figure:
    """Precision-recall curve per model, with the operating point at ``threshold`` and the base rate."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure, (ax,) = _figure()
    for i, (name, s) in enumerate(scores.items()):
        precision, recall, _ = precision_recall_curve(y_true, s)
        ax.step(
            recall,
            precision,
            where="post",
            color=_color(i),
            label=f"{name} (AP {average_precision_score(y_true, s):.3f})",
        )
        hit = s >= threshold
        tp = float((hit & (y_true == 1)).sum())
        op_precision = tp / hit.sum() if hit.any() else 1.0
        op_recall = tp / max(int((y_true == 1).sum()), 1)
        ax.plot([op_recall], [op_precision], "o", color=_color(i), markeredgecolor="black")
        ax.annotate(
            f"{op_precision:.2f} / {op_recall:.2f}",
            (op_recall, op_precision),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize="small",
        )
    ax.axhline(float(np.mean(y_true)), linestyle=":", color="grey", label=f"base rate {np.mean(y_true):.3f}")
    ax.plot([], [], "o", color="white", markeredgecolor="black", label=f"threshold {threshold:g} (precision / recall)")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize="small")
    return figure


def calibration_figure(y_true: np.ndarray, scores: Scores, *, bins: int) -> Figure:
    """Reliability diagram (observed fraud rate vs mean score per bin) above the row count of each bin."""
    figure, (top, bottom) = _figure(6.0, 6.0, rows=2)
    width = 1.0 / bins / (len(scores) + 1)
    for i, (name, s) in enumerate(scores.items()):
        table = calibration_table(y_true, s, bins=bins)
        top.plot(table["mean_score"], table["observed_rate"], "o-", color=_color(i), label=name)
        left = table["bin"].to_numpy() / bins + i * width
        bottom.bar(left, table["count"], width=width, align="edge", color=_color(i), label=name)
        for x, count in zip(left, table["count"], strict=True):
            bottom.annotate(str(int(count)), (x + width / 2, count), ha="center", va="bottom", fontsize="x-small")
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    top.set(xlabel="mean score in bin", ylabel="observed fraud rate", title="Calibration (holdout)")
    top.set(xlim=(0, 1), ylim=(0, 1.02))
    top.legend(loc="upper left", fontsize="small")
    bottom.set_yscale("log")
    bottom.set(xlabel="score bin", ylabel="rows (log)", xlim=(0, 1))
    return figure


def score_distribution_figure(y_true: np.ndarray, scores: Scores, *, threshold: float) -> Figure:
    """Histogram of scores for legitimate and fraudulent rows (one panel per model), with the threshold."""
    figure, axes = _figure(6.0 * len(scores), 4.5, cols=len(scores))
    edges = [i / 40 for i in range(41)]
    for ax, (name, s) in zip(axes, scores.items(), strict=True):
        ax.hist(s[y_true == 0], bins=edges, alpha=0.6, color="tab:blue", label=f"legit ({int((y_true == 0).sum())})")
        ax.hist(s[y_true == 1], bins=edges, alpha=0.6, color="tab:red", label=f"fraud ({int((y_true == 1).sum())})")
        ax.axvline(threshold, linestyle="--", color="black", label=f"threshold {threshold:g}")
        ax.set_yscale("log")
        ax.set(xlabel="score", ylabel="rows (log)", title=f"Score distribution by class: {name}", xlim=(0, 1))
        ax.legend(fontsize="small")
    return figure


def confusion_figure(y_true: np.ndarray, scores: Scores, *, threshold: float) -> Figure:
    """Confusion matrix at ``threshold`` (counts and share of the actual class), one panel per model."""
    figure, axes = _figure(4.5 * len(scores), 4.0, cols=len(scores))
    labels = ("legit", "fraud")
    for ax, (name, s) in zip(axes, scores.items(), strict=True):
        predicted = (s >= threshold).astype(int)
        matrix = np.array([[int(((y_true == a) & (predicted == p)).sum()) for p in (0, 1)] for a in (0, 1)])
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for a in (0, 1):
            for p in (0, 1):
                colour = "white" if rates[a, p] > 0.5 else "black"
                ax.text(p, a, f"{matrix[a, p]}\n{rates[a, p]:.1%}", ha="center", va="center", color=colour)
        ax.set_xticks([0, 1], labels=labels)
        ax.set_yticks([0, 1], labels=labels)
        ax.set(xlabel="predicted", ylabel="actual", title=f"Confusion at {threshold:g}: {name}")
    return figure


def segments_figure(table: pd.DataFrame, *, metrics: tuple[str, ...] = ("pr_auc", "recall_at_threshold")) -> Figure:
    """Per-segment metrics as horizontal bars (one panel per metric), labelled with rows and frauds.

    ``table`` is :func:`mlops_recipes.core.segments.segment_metrics` output, optionally with a ``model``
    column (one bar per model and segment).
    """
    models = list(table["model"].unique()) if "model" in table else [""]
    keys = list(dict.fromkeys(table["segment"]))
    figure, axes = _figure(6.5 * len(metrics), 0.45 * len(keys) * len(models) + 1.5, cols=len(metrics))
    height = 0.8 / len(models)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, model in enumerate(models):
            rows = table[table["model"] == model] if model else table
            rows = rows.set_index("segment").reindex(keys)
            positions = np.arange(len(keys)) + i * height
            ax.barh(positions, rows[metric].fillna(0.0), height=height, color=_color(i), label=model or None)
            for y, value in zip(positions, rows[metric], strict=True):
                text = "n/a" if pd.isna(value) else f"{value:.2f}"
                ax.annotate(
                    text,
                    (0 if pd.isna(value) else value, y),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize="x-small",
                )
        first = table.drop_duplicates("segment").set_index("segment").reindex(keys)
        ax.set_yticks(
            np.arange(len(keys)) + height * (len(models) - 1) / 2,
            labels=[f"{k} ({int(r.rows)} rows, {int(r.positives)} fraud)" for k, r in first.iterrows()],
            fontsize="small",
        )
        ax.invert_yaxis()
        ax.set(xlim=(0, 1.1), xlabel=metric, title=f"{metric} by segment")
        if len(models) > 1:
            ax.legend(fontsize="small")
    return figure


def holdout_figures(
    y_true: np.ndarray,
    scores: Scores,
    *,
    threshold: float,
    max_fpr: float,
    bins: int,
    segments: pd.DataFrame | None = None,
) -> dict[str, Figure]:
    """Every holdout figure by name (``FIGURE_NAMES``, plus ``segments`` when a segment table is given)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = {name: np.asarray(s, dtype=np.float64) for name, s in scores.items()}
    figures = {
        "roc": roc_figure(y_true, scores, threshold=threshold, max_fpr=max_fpr),
        "precision_recall": precision_recall_figure(y_true, scores, threshold=threshold),
        "calibration": calibration_figure(y_true, scores, bins=bins),
        "score_distribution": score_distribution_figure(y_true, scores, threshold=threshold),
        "confusion": confusion_figure(y_true, scores, threshold=threshold),
    }
    if segments is not None and not segments.empty:
        figures["segments"] = segments_figure(segments)
    return figures
