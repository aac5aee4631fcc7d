"""A rollout in the running service: the candidate next to the champion, in shadow or canary.

The rollout record comes from the registry (:mod:`mlops_recipes.io.rollout`), read by the same watcher loop that
follows the champion alias, so every worker and replica converges on it within ``SERVING_POLL_INTERVAL_S``. The
candidate is loaded, checked, warmed up and swapped by a :class:`~serving.model.ModelManager` of its own: the
same loader and hot swap the champion uses, with the record as its version source.

- Shadow: after the champion scored a sampled request, its rows go to a bounded queue; a background thread scores
  them with the candidate and compares. A full queue drops the rows (counted): the response never waits for it.
- Canary: each transaction's customer is assigned a variant by ``hash(salt, customer)``; the candidate's share is
  scored by the candidate (``variant: candidate`` in the prediction), the rest by the champion.

Without a running rollout :meth:`RolloutService.score` is one call of the champion's scoring, nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from mlops_recipes.contract import CUSTOMER
from mlops_recipes.core.drift import histogram
from mlops_recipes.core.rollout import CANDIDATE_VARIANT, CHAMPION_VARIANT, RolloutState, Variant, assign_variant
from mlops_recipes.io.models import LoadedModel
from mlops_recipes.settings import Settings
from serving.metrics import ServiceMetrics
from serving.model import ModelManager
from serving.monitoring import LiveMonitor
from serving.schemas import Prediction, Transaction
from serving.scoring import OnScored
from serving.settings import ServingSettings

_log = logging.getLogger("serving.rollout")
# Scores each variant needs in its window before the score PSI is published (fewer: noise).
_MIN_PSI_ROWS = 200
# Queued shadow requests scored in one model call at most, and how long the worker waits to fill a call.
_SHADOW_BATCH = 64
_SHADOW_LINGER_S = 0.05
Scorer = Callable[..., list[Prediction]]


@dataclass(frozen=True)
class _ShadowJob:
    """Rows the champion scored, waiting for the candidate."""

    candidate: LoadedModel
    matrix: np.ndarray
    champion_scores: np.ndarray
    champion_decisions: list[bool]


class RolloutService:
    """The rollout this process follows: the record, the candidate model, the shadow queue and the metrics."""

    def __init__(self, *, settings: Settings, serving: ServingSettings, metrics: ServiceMetrics) -> None:
        self._settings = settings
        self._metrics = metrics.rollout
        self._record: RolloutState | None = None  # as last read: running, or the last one finished
        # (record, loaded candidate) while requests are routed to it: one reference, swapped whole.
        self._active: tuple[RolloutState, LoadedModel] | None = None
        self._candidate = ModelManager(
            settings=settings,
            alias="candidate",
            metrics=metrics,
            retry_base_s=serving.load_retry_base_s,
            retry_max_s=serving.load_retry_max_s,
            threshold_override=serving.threshold,  # as for the champion: the version's own unless overridden
            version_source=self._wanted_version,
            primary=False,
        )
        self._queue: queue.Queue[_ShadowJob | None] = queue.Queue(maxsize=serving.rollout_shadow_queue)
        self._windows: dict[Variant, deque[float]] = {
            variant: deque(maxlen=serving.rollout_score_window) for variant in (CHAMPION_VARIANT, CANDIDATE_VARIANT)
        }
        self._info_labels: tuple[str, str, str, str] | None = None
        self._worker: threading.Thread | None = None
        # Exported at 0 from the start: a ratio over them reads 0, not "no data", before the first error or drop.
        for variant in (CHAMPION_VARIANT, CANDIDATE_VARIANT):
            for outcome in ("ok", "error"):
                self._metrics.rows.labels(variant, outcome)
        for reason in ("queue_full", "features"):
            self._metrics.shadow_dropped.labels(reason)

    @property
    def record(self) -> RolloutState | None:
        """The rollout record as this process last read it."""
        return self._record

    @property
    def candidate(self) -> LoadedModel | None:
        """The candidate requests are routed to now, if any."""
        active = self._active
        return None if active is None else active[1]

    def _wanted_version(self) -> str | None:
        record = self._record
        return record.version if record is not None and record.running else None

    # --- the watcher's side ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the shadow worker thread (once, from the lifespan)."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._shadow_loop, name="rollout-shadow", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Stop the shadow worker; rows still queued are not scored (shadow results are only metrics)."""
        if self._worker is not None:
            while True:  # make room for the stop marker: a full queue must not block shutdown
                try:
                    self._queue.put_nowait(None)
                    break
                except queue.Full:
                    self._drain_one()
            self._worker.join(timeout=5)
            self._worker = None

    def _drain_one(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._queue.get_nowait()

    def refresh(self, champion: ModelManager, prepare: Callable[[LoadedModel], None]) -> bool:
        """Read the record; load, swap or unload the candidate. True if the candidate changed. Never raises."""
        from mlops_recipes.io import rollout
        from mlops_recipes.io.models import registry_client

        try:
            record = rollout.read(registry_client(self._settings), self._settings.model_name)
        except Exception as error:  # the registry being down (or a damaged record) keeps the rollout as it is
            _log.warning("cannot read the rollout record: %s", error)
            return False
        if record != self._record:
            _log.info(
                "rollout record",
                extra={
                    "candidate_version": record and record.version,
                    "mode": record and record.mode,
                    "percent": record and record.percent,
                    "step": record and record.step,
                    "status": record and record.status,
                },
            )
            previous = self._record
            if record is None or previous is None or (record.version, record.salt) != (previous.version, previous.salt):
                for window in self._windows.values():  # another rollout: its score PSI starts afresh
                    window.clear()
        self._record = record
        changed = False
        if record is not None and record.running:
            changed = self._candidate.refresh(prepare)
            current = self._candidate.current
            active = None if current is None or current.version != record.version else (record, current)
        else:
            active = None
            if self._candidate.current is not None:
                if record is not None and record.status == "promoted":
                    # The champion takes the candidate's place first: no customer goes back to the old version.
                    champion.refresh(prepare)
                    served = champion.current
                    if served is None or served.version != record.version:
                        self._publish(record)
                        return False  # keep routing to the candidate until the champion serves it
                self._candidate.unload()
                changed = True
        self._active = active
        self._publish(record)
        return changed

    def _publish(self, record: RolloutState | None) -> None:
        labels = None if record is None else (record.version, record.mode, record.step, record.status)
        if labels != self._info_labels:
            if self._info_labels is not None:
                self._metrics.info.labels(*self._info_labels).set(0)
            if labels is not None:
                self._metrics.info.labels(*labels).set(1)
            self._info_labels = labels
        running = self._active is not None and record is not None and record.running
        self._metrics.share.set(record.percent if running and record is not None else 0.0)
        champion, candidate = (np.array(self._windows[v]) for v in (CHAMPION_VARIANT, CANDIDATE_VARIANT))
        if running and min(len(champion), len(candidate)) >= _MIN_PSI_ROWS:
            self._metrics.score_psi.set(histogram(champion).psi(candidate))
        elif not running:
            self._metrics.score_psi.set(0.0)

    # --- the request's side ---------------------------------------------------------------------------------

    def score(
        self,
        transactions: Sequence[Transaction],
        *,
        champion: LoadedModel,
        scorer: Scorer,
        monitor: LiveMonitor | None,
    ) -> list[Prediction]:
        """Score ``transactions`` as the rollout says; ``scorer(transactions, model=…)`` is the champion's scoring."""
        active = self._active  # read once: the whole request follows one record
        if active is None or active[1].version == champion.version:
            return scorer(transactions, model=champion)
        record, candidate = active
        if record.mode == "shadow":
            hook = self._shadow_hook(candidate, record.percent)
            return self._counted(
                CHAMPION_VARIANT, len(transactions), lambda: scorer(transactions, model=champion, on_scored=hook)
            )
        variants = [
            assign_variant(getattr(t, CUSTOMER), salt=record.salt, percent=record.percent) for t in transactions
        ]
        predictions: list[Prediction | None] = [None] * len(transactions)
        for variant, model in ((CHAMPION_VARIANT, champion), (CANDIDATE_VARIANT, candidate)):
            rows = [i for i, v in enumerate(variants) if v == variant]
            if not rows:
                continue
            group = [transactions[i] for i in rows]
            # The candidate's rows stay out of the champion's drift window; their labels still count.
            extra: dict[str, LiveMonitor | None] = (
                {} if variant == CHAMPION_VARIANT else {"monitor": monitor and monitor.labels_only()}
            )
            call = partial(scorer, group, model=model, on_scored=self._recorder(variant), **extra)
            scored = self._counted(variant, len(group), call)
            for row, prediction in zip(rows, scored, strict=True):
                predictions[row] = (
                    prediction if variant == CHAMPION_VARIANT else prediction.model_copy(update={"variant": variant})
                )
        return [p for p in predictions if p is not None]

    def _counted(self, variant: Variant, rows: int, call: Callable[[], list[Prediction]]) -> list[Prediction]:
        try:
            scored = call()
        except Exception:
            self._metrics.rows.labels(variant, "error").inc(rows)
            raise
        self._metrics.rows.labels(variant, "ok").inc(rows)
        return scored

    def _recorder(self, variant: Variant) -> OnScored:
        def record(
            model: LoadedModel, matrix: np.ndarray, scores: np.ndarray, decisions: list[bool], seconds: float
        ) -> None:
            self._observe(variant, scores, decisions, seconds)

        return record

    def _observe(self, variant: Variant, scores: np.ndarray, decisions: Sequence[bool], seconds: float) -> None:
        metrics = self._metrics
        metrics.model_latency.labels(variant).observe(seconds)
        values = scores.tolist()
        for value, is_fraud in zip(values, decisions, strict=True):
            metrics.scores.labels(variant).observe(value)
            metrics.decisions.labels(variant, "fraud" if is_fraud else "legit").inc()
        self._windows[variant].extend(values)

    def _shadow_hook(self, candidate: LoadedModel, percent: float) -> OnScored:
        def shadow(
            model: LoadedModel, matrix: np.ndarray, scores: np.ndarray, decisions: list[bool], seconds: float
        ) -> None:
            self._observe(CHAMPION_VARIANT, scores, decisions, seconds)
            if percent < 100 and random.random() * 100 >= percent:  # noqa: S311 - sampling, not security
                return
            if candidate.features != model.features:  # the champion's rows do not fit the candidate
                self._metrics.shadow_dropped.labels("features").inc(len(decisions))
                return
            try:
                self._queue.put_nowait(_ShadowJob(candidate, matrix, scores, decisions))
            except queue.Full:
                self._metrics.shadow_dropped.labels("queue_full").inc(len(decisions))

        return shadow

    def _shadow_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch, stopping = [job], False
            # What queues up within a short linger goes into the same model call: under load, one call's fixed cost
            # (input validation, thread set-up: most of a one-row call) is shared by many requests' rows. Shadow
            # figures are only metrics: a few milliseconds later is no loss.
            deadline = time.monotonic() + _SHADOW_LINGER_S
            while len(batch) < _SHADOW_BATCH:
                try:
                    queued = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if queued is None:
                    stopping = True
                    break
                batch.append(queued)
            try:
                for candidate in {id(j.candidate): j.candidate for j in batch}.values():
                    self._shadow_score(candidate, [j for j in batch if j.candidate is candidate])
            except Exception:  # the worker must outlive any single failure
                _log.exception("shadow scoring failed")
            if stopping:
                return

    def _shadow_score(self, candidate: LoadedModel, jobs: list[_ShadowJob]) -> None:
        metrics = self._metrics
        rows = sum(len(job.champion_decisions) for job in jobs)
        started = time.perf_counter()
        try:
            scores = candidate.predict(np.vstack([job.matrix for job in jobs]))
        except Exception as error:  # the candidate's failure is a figure for the analysis, never the response's
            metrics.rows.labels(CANDIDATE_VARIANT, "error").inc(rows)
            _log.warning("shadow candidate v%s failed: %s: %s", candidate.version, type(error).__name__, error)
            return
        seconds = time.perf_counter() - started
        champion_scores = np.concatenate([job.champion_scores for job in jobs])
        champion_decisions = [d for job in jobs for d in job.champion_decisions]
        decisions = [bool(p >= candidate.threshold) for p in scores.tolist()]
        self._observe(CANDIDATE_VARIANT, scores, decisions, seconds)
        metrics.rows.labels(CANDIDATE_VARIANT, "ok").inc(rows)
        metrics.shadow_compared.inc(rows)
        metrics.shadow_disagreements.inc(sum(a != b for a, b in zip(decisions, champion_decisions, strict=True)))
        for difference in np.abs(scores - champion_scores).tolist():
            metrics.shadow_score_difference.observe(difference)
