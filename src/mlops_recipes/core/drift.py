"""Drift of live model inputs and scores against the training reference: binned summaries and PSI.

At training time each model input (and the model's score) is summarised as quantile bin edges plus the share
of rows per bin, with one extra bin for missing values. The summary is small JSON, logged with the model run.
Online, a sliding window of the rows actually scored is binned on the same edges and compared with the
population stability index, ``PSI = Σ (a - e) · ln(a / e)``: under 0.1 is stable, 0.1-0.2 a moderate shift,
over 0.2 a significant one (the usual credit-scoring reading of the figure).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

REFERENCE_VERSION = 1
# Where the train stage logs the reference in the model's MLflow run.
REFERENCE_ARTIFACT = "monitoring/reference.json"
DEFAULT_BINS = 10
# Empty bins would make PSI infinite: shares are floored at this before the log.
_EPSILON = 1e-4


@dataclass(frozen=True)
class Histogram:
    """Quantile bin edges of one variable and the share of reference rows in each bin (last bin: missing)."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def counts(self, values: np.ndarray) -> np.ndarray:
        """Rows per bin of ``values`` on these edges; NaN goes to the last (missing) bin."""
        return bin_counts(values, np.asarray(self.edges, dtype=np.float64))

    def psi(self, values: np.ndarray) -> float:
        """PSI of ``values`` against the reference shares."""
        return psi(np.asarray(self.shares), self.counts(values))

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form."""
        return {"edges": list(self.edges), "shares": list(self.shares)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        """Read what :meth:`to_dict` wrote, checking that the shapes agree."""
        edges = tuple(float(e) for e in data["edges"])
        shares = tuple(float(s) for s in data["shares"])
        if len(shares) != len(edges) + 2:
            raise ValueError(f"{len(edges)} edges need {len(edges) + 2} shares (bins + missing), got {len(shares)}")
        if list(edges) != sorted(set(edges)):
            raise ValueError("bin edges must be strictly increasing")
        return cls(edges, shares)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in ``len(edges) + 1`` bins cut at ``edges`` (right-closed below), then one for NaN."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    present = values[~missing]
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return np.append(counts, int(missing.sum())).astype(np.float64)


def psi(expected_shares: np.ndarray, actual_counts: np.ndarray) -> float:
    """Population stability index of observed counts against expected shares (0 for no rows)."""
    total = float(actual_counts.sum())
    if total == 0:
        return 0.0
    expected = np.maximum(np.asarray(expected_shares, dtype=np.float64), _EPSILON)
    actual = np.maximum(actual_counts / total, _EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def histogram(values: np.ndarray, *, bins: int = DEFAULT_BINS) -> Histogram:
    """The reference histogram of ``values``: edges at its quantiles, or between the values of a discrete one."""
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    distinct = np.unique(present)
    if distinct.size <= bins:  # a discrete variable (flags, small counts): one bin per value, cut halfway
        edges = (distinct[1:] + distinct[:-1]) / 2.0
    else:
        edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    counts = bin_counts(values, edges)
    return Histogram(tuple(edges.tolist()), tuple((counts / max(values.size, 1)).tolist()))


@dataclass(frozen=True)
class DriftReference:
    """The training-time summary a live window is compared with: one histogram per input, one for the score."""

    features: dict[str, Histogram]
    score: Histogram
    rows: int

    @classmethod
    def build(
        cls, matrix: np.ndarray, feature_names: Sequence[str], scores: np.ndarray, *, bins: int = DEFAULT_BINS
    ) -> DriftReference:
        """Summarise the training matrix (columns in ``feature_names`` order) and the model's scores on it."""
        if matrix.shape[1] != len(feature_names):
            raise ValueError(f"matrix has {matrix.shape[1]} columns for {len(feature_names)} feature names")
        return cls(
            features={name: histogram(matrix[:, i], bins=bins) for i, name in enumerate(feature_names)},
            score=histogram(scores, bins=bins),
            rows=int(matrix.shape[0]),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the train stage logs as ``monitoring/reference.json``)."""
        return {
            "version": REFERENCE_VERSION,
            "rows": self.rows,
            "features": {name: h.to_dict() for name, h in self.features.items()},
            "score": self.score.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        """Read a reference; an unknown format version is an error rather than a silent misreading."""
        if data.get("version") != REFERENCE_VERSION:
            raise ValueError(f"drift reference format {data.get('version')!r} is not {REFERENCE_VERSION}")
        return cls(
            features={name: Histogram.from_dict(h) for name, h in data["features"].items()},
            score=Histogram.from_dict(data["score"]),
            rows=int(data["rows"]),
        )


@dataclass(frozen=True)
class DriftReport:
    """PSI per feature and of the score over the rows currently in a window."""

    rows: int
    features: dict[str, float]
    score: float


class DriftWindow:
    """The last ``capacity`` scored rows (model inputs and scores), compared with a reference on demand.

    Appends copy rows into preallocated ring buffers (no allocation per request); :meth:`report` bins the
    window, which costs a few hundred microseconds for thousands of rows, so it runs on a timer, not per request.
    Thread-safe: scoring threads append while the publisher reads.
    """

    def __init__(self, reference: DriftReference, feature_names: Sequence[str], *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        missing = sorted(set(feature_names) - set(reference.features))
        if missing:
            raise ValueError(f"the drift reference has no histogram for {missing}")
        self.reference = reference
        self.feature_names = tuple(feature_names)
        self._matrix = np.full((capacity, len(self.feature_names)), np.nan)
        self._scores = np.full(capacity, np.nan)
        self._next = 0
        self._rows = 0
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """How many of the latest rows the window holds."""
        return int(self._scores.shape[0])

    def add(self, matrix: np.ndarray, scores: np.ndarray) -> None:
        """Append scored rows (columns in ``feature_names`` order); the oldest fall out."""
        capacity = self.capacity
        if matrix.shape[0] > capacity:  # only the newest rows can stay anyway
            matrix, scores = matrix[-capacity:], scores[-capacity:]
        n = matrix.shape[0]
        with self._lock:
            positions = (self._next + np.arange(n)) % capacity
            self._matrix[positions] = matrix
            self._scores[positions] = scores
            self._next = (self._next + n) % capacity
            self._rows = min(self._rows + n, capacity)

    def report(self) -> DriftReport:
        """PSI of each feature and of the score over the rows in the window."""
        with self._lock:
            rows = self._rows
            matrix = self._matrix[:rows].copy()
            scores = self._scores[:rows].copy()
        features = {name: self.reference.features[name].psi(matrix[:, i]) for i, name in enumerate(self.feature_names)}
        return DriftReport(rows=rows, features=features, score=self.reference.score.psi(scores))
