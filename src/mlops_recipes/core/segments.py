"""Holdout segments (channel, new vs established accounts, amount bands, ...) and metrics per segment.

Pure functions on in-memory frames. A segment key is ``<segment name>/<value or band label>``
(``channel/online``, ``account_age/new``); keys name metrics in MLflow (``segment/<key>/<metric>``), in
``metrics/segments.json`` and in the gate's per-segment floors.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlops_recipes.contract import EVENT_TIME
from mlops_recipes.errors import ReportedError
from mlops_recipes.params import SegmentParams

MISSING = "missing"
SEGMENT_METRICS = ("pr_auc", "roc_auc", "recall_at_threshold", "precision_at_threshold")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class SegmentColumnError(ReportedError, KeyError):
    """A segment definition (``evaluate.segments``) names a column the data does not have."""


def _label(value: object) -> str:
    return _UNSAFE.sub("_", str(value)).strip("_") or "empty"


def _band_labels(bands: tuple[float, ...], labels: tuple[str, ...] | None) -> tuple[str, ...]:
    if labels is not None:
        return labels
    edges = [f"{e:g}" for e in bands]
    return (f"under_{edges[0]}", *(f"{lo}_to_{hi}" for lo, hi in itertools.pairwise(edges)), f"over_{edges[-1]}")


def assign(frame: pd.DataFrame, spec: SegmentParams, *, event_time: str = EVENT_TIME) -> pd.Series:
    """The segment label of every row of ``frame`` for one segment definition (``missing`` where unknown)."""
    if spec.column not in frame:
        raise SegmentColumnError(
            f"segment {spec.name!r}: column {spec.column!r} is in neither the transactions nor the holdout"
        )
    column = frame[spec.column]
    bands = spec.bands
    if bands is None:
        labels = column.map(lambda v: MISSING if pd.isna(v) else _label(v))
        return labels.astype(str).rename(spec.name)
    if pd.api.types.is_datetime64_any_dtype(column):
        # A timestamp is banded by its age in days at the transaction (account_created_at → account age).
        values = np.asarray((frame[event_time] - column).dt.total_seconds(), dtype=np.float64) / 86_400.0
    else:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    names = np.asarray(_band_labels(bands, spec.labels), dtype=object)
    which = np.searchsorted(np.asarray(bands), values, side="right")
    banded = np.where(np.isnan(values), MISSING, names[np.minimum(which, len(names) - 1)])
    return pd.Series(banded, index=frame.index, name=spec.name, dtype=str)


def assign_all(frame: pd.DataFrame, specs: Sequence[SegmentParams]) -> pd.DataFrame:
    """One column of labels per segment definition, indexed like ``frame``."""
    return pd.DataFrame({spec.name: assign(frame, spec) for spec in specs}, index=frame.index)


def _one(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    both = 0 < y.sum() < len(y)
    hit = s >= threshold
    tp = float((hit & (y == 1)).sum())
    return {
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "recall_at_threshold": tp / y.sum() if y.sum() else float("nan"),
        "precision_at_threshold": tp / hit.sum() if hit.sum() else float("nan"),
    }


def segment_metrics(y_true: np.ndarray, scores: np.ndarray, labels: pd.DataFrame, *, threshold: float) -> pd.DataFrame:
    """Metrics per segment: one row per key with rows, positives and :data:`SEGMENT_METRICS` (NaN if undefined).

    Ranking metrics need both classes in the segment; threshold metrics need a fraud (recall) or a flagged row
    (precision).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    rows = []
    for name in labels.columns:
        column = labels[name].to_numpy()
        for value in sorted(set(column)):
            mask = column == value
            y, s = y_true[mask], scores[mask]
            rows.append(
                {
                    "segment": f"{name}/{value}",
                    "dimension": name,
                    "value": value,
                    "rows": int(mask.sum()),
                    "positives": int(y.sum()),
                    **_one(y, s, threshold),
                }
            )
    columns = ["segment", "dimension", "value", "rows", "positives", *SEGMENT_METRICS]
    return pd.DataFrame(rows, columns=columns)


def as_document(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """``{segment name: {value: {rows, positives, metrics}}}`` for ``metrics/segments.json`` (NaN as null)."""
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for row in table.to_dict("records"):
        entry: dict[str, float | int | None] = {"rows": int(row["rows"]), "positives": int(row["positives"])}
        for metric in SEGMENT_METRICS:
            value = float(row[metric])
            entry[metric] = None if np.isnan(value) else round(value, 6)
        out.setdefault(str(row["dimension"]), {})[str(row["value"])] = entry
    return out


def from_document(document: dict[str, dict[str, dict[str, float | int | None]]]) -> pd.DataFrame:
    """Inverse of :func:`as_document`."""
    rows = [
        {
            "segment": f"{name}/{value}",
            "dimension": name,
            "value": value,
            "rows": int(entry["rows"] or 0),
            "positives": int(entry["positives"] or 0),
            **{m: float("nan") if entry.get(m) is None else float(entry[m] or 0.0) for m in SEGMENT_METRICS},
        }
        for name, values in document.items()
        for value, entry in values.items()
    ]
    return pd.DataFrame(rows, columns=["segment", "dimension", "value", "rows", "positives", *SEGMENT_METRICS])


def mlflow_metrics(table: pd.DataFrame) -> dict[str, float]:
    """``segment/<key>/<metric>`` → value for MLflow (undefined metrics left out; rows and positives kept)."""
    out: dict[str, float] = {}
    for row in table.to_dict("records"):
        key = f"segment/{row['segment']}"
        out[f"{key}/rows"] = float(row["rows"])
        out[f"{key}/positives"] = float(row["positives"])
        for metric in SEGMENT_METRICS:
            value = float(row[metric])
            if not np.isnan(value):
                out[f"{key}/{metric}"] = value
    return out
