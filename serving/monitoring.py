"""Model and data monitoring inside the service: input and score drift, delayed labels, feature freshness.

Each worker process keeps its own sliding window of the rows it scored and compares it with the training
reference saved with the model (:mod:`mlops_recipes.core.drift`). A timer publishes the figures as
low-cardinality gauges (one series per feature, never per entity); with several workers the exported value is
the highest worker's (``livemax``). Delayed labels (confirmed fraud or not) are matched to the scores this process
returned, by the client's ``transaction_id``, and counted as true/false positives/negatives: Prometheus turns
the counters into live precision and recall over any window.
"""

from __future__ import annotations

import copy
import resource
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlops_recipes.core.drift import DriftWindow
from mlops_recipes.core.request_features import is_request_only
from mlops_recipes.io.models import LoadedModel
from serving.metrics import ServiceMetrics


@dataclass(frozen=True)
class Scored:
    """What the service remembers of a score until its label arrives."""

    model_version: str
    is_fraud: bool


@dataclass(frozen=True)
class FeedbackResult:
    """How many labels matched a remembered score, and the ids that did not."""

    matched: int
    unmatched_ids: list[str]


def feature_source(name: str) -> str:
    """``request`` for inputs computed from the request alone, ``stored`` for those that use online features."""
    return "request" if is_request_only(name) else "stored"


def outcome(*, predicted: bool, actual: bool) -> str:
    """The confusion-matrix cell of one labelled decision: tp, fp, fn or tn."""
    if predicted:
        return "tp" if actual else "fp"
    return "fn" if actual else "tn"


class LiveMonitor:
    """Per-process drift window and label matching, published as gauges and counters of ``metrics``."""

    def __init__(self, metrics: ServiceMetrics, *, window_rows: int, min_rows: int, remembered_scores: int) -> None:
        self._metrics = metrics
        self._window_rows = window_rows
        self._min_rows = min_rows
        self._window: tuple[str, DriftWindow] | None = None  # (model version, its window)
        self._scores: OrderedDict[str, Scored] = OrderedDict()
        self._capacity = remembered_scores
        self._lock = threading.Lock()
        self._drift = True

    def labels_only(self) -> LiveMonitor:
        """A view that remembers scores for labels here but keeps its rows out of the drift window.

        A canary's candidate scores some customers: its rows must neither reset the champion's window (the window
        follows one version) nor be compared with the champion's reference. Its labels still count, by version.
        """
        view = copy.copy(self)  # shares the score memory and its lock
        view._drift = False
        return view

    def _window_for(self, model: LoadedModel) -> DriftWindow | None:
        current = self._window
        if current is not None and current[0] == model.version:
            return current[1]
        if model.drift_reference is None:
            return None
        with self._lock:
            if self._window is None or self._window[0] != model.version:
                # A new model starts an empty window: its reference, not the last model's, is the baseline.
                window = DriftWindow(model.drift_reference, model.features, capacity=self._window_rows)
                self._window = (model.version, window)
            return self._window[1]

    def observe(
        self,
        model: LoadedModel,
        matrix: np.ndarray,
        probabilities: np.ndarray,
        decisions: Sequence[bool],
        transaction_ids: Sequence[str | None],
    ) -> None:
        """Record scored rows: into the drift window, and by transaction id for labels to come."""
        window = self._window_for(model) if self._drift else None
        if window is not None:
            window.add(matrix, probabilities)
        ids = [(tid, is_fraud) for tid, is_fraud in zip(transaction_ids, decisions, strict=True) if tid is not None]
        if not ids:
            return
        with self._lock:
            for tid, is_fraud in ids:
                self._scores[tid] = Scored(model.version, is_fraud)
                self._scores.move_to_end(tid)
            while len(self._scores) > self._capacity:  # bounded memory: the oldest unlabelled scores go first
                self._scores.popitem(last=False)

    def label(self, labels: Sequence[tuple[str, bool]]) -> FeedbackResult:
        """Match confirmed labels with remembered scores; each score is counted once."""
        matched = 0
        unmatched: list[str] = []
        with self._lock:
            found = [(tid, actual, self._scores.pop(tid, None)) for tid, actual in labels]
        for tid, actual, scored in found:
            if scored is None:
                unmatched.append(tid)
                continue
            matched += 1
            cell = outcome(predicted=scored.is_fraud, actual=actual)
            self._metrics.feedback_labels.labels(scored.model_version, cell).inc()
        if unmatched:
            self._metrics.feedback_unmatched.inc(len(unmatched))
        return FeedbackResult(matched=matched, unmatched_ids=unmatched)

    def publish_drift(self) -> None:
        """Compute PSI over the window and set the gauges (only once the window holds ``min_rows``)."""
        current = self._window
        if current is None:
            return
        report = current[1].report()
        self._metrics.drift_window_rows.set(report.rows)
        if report.rows < self._min_rows:  # too few rows: PSI would be noise, and alerts would flap
            return
        for name, value in report.features.items():
            self._metrics.feature_drift.labels(name, feature_source(name)).set(value)
        self._metrics.score_drift.set(report.score)


def publish_model(metrics: ServiceMetrics, model: LoadedModel) -> None:
    """Gauges of the served model's holdout metrics (what the pipeline dashboard shows)."""
    for name, value in model.holdout_metrics.items():
        metrics.served_model_metric.labels(name).set(value)


class ProcessSampler:
    """This worker's resident memory and CPU time, into the worker gauges (called by the monitoring timer)."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        self._cpu_seen = 0.0
        self._page_size = resource.getpagesize()

    def sample(self) -> None:
        """Set the memory gauge and add the CPU time used since the last sample."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        self._metrics.worker_cpu.inc(max(cpu - self._cpu_seen, 0.0))
        self._cpu_seen = cpu
        self._metrics.worker_memory.set(self._resident_bytes(usage.ru_maxrss * 1024))

    def _resident_bytes(self, fallback: int) -> int:
        try:  # Linux: the current resident set, in pages
            with open("/proc/self/statm", encoding="ascii") as statm:
                return int(statm.read().split()[1]) * self._page_size
        except (OSError, IndexError, ValueError):
            return fallback  # elsewhere: the peak, which is what getrusage knows
