"""The served model: resolve the registry alias, load, warm up, and hot-swap when the alias moves.

Loading, the checks and the model call live in the model contract, :mod:`mlops_recipes.io.models` (batch
scoring and the gate use it too); this module adds the watcher's state: which version is served, which one was
refused, and the metrics of each swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlops_recipes.io.models import LoadedModel, ModelLoadError, is_transient, load_version, resolve_alias
from mlops_recipes.settings import Settings
from serving.metrics import ServiceMetrics
from serving.monitoring import publish_model

__all__ = ["LoadedModel", "ModelLoadError", "ModelManager", "ModelNotReady"]

_log = logging.getLogger("serving.model")


class ModelNotReady(RuntimeError):
    """No model is loaded yet (none registered under the alias, or loading failed)."""


@dataclass(frozen=True)
class _Retry:
    """A version whose load failed for a transient reason: when to try it again."""

    version: str
    attempts: int
    next_at: float


class ModelManager:
    """Holds the current model and replaces it atomically when the registry alias moves.

    A version that fails a check is *refused* (remembered until the alias moves: no reload every poll); one that
    fails to load for a transient reason (a store out of reach) is retried with exponential backoff. Either way
    the current model, if any, keeps serving, and the process stays up: without a model it is live, not ready.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        alias: str,
        metrics: ServiceMetrics,
        retry_base_s: float = 5.0,
        retry_max_s: float = 300.0,
        max_alias_skew_s: float = 600.0,
        version_source: Callable[[], str | None] | None = None,
        primary: bool = True,
        threshold_override: float | None = None,
    ) -> None:
        # ``version_source`` replaces the alias lookup (a rollout's candidate comes from the rollout record);
        # only the ``primary`` manager (the champion's) publishes the served-model gauges.
        self._version_source = version_source
        self._primary = primary
        self._settings = settings
        self._alias = alias
        self._metrics = metrics
        self._current: LoadedModel | None = None
        self._refused: str | None = None
        self._retry: _Retry | None = None
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._max_alias_skew_s = max_alias_skew_s
        self._threshold_override = threshold_override
        self._skew_since: float | None = None
        self._swap_lock = threading.Lock()  # one reload at a time; readers never wait for it

    @property
    def current(self) -> LoadedModel | None:
        """The model in service, or None while there is none."""
        return self._current

    def require(self) -> LoadedModel:
        """The model in service, or :class:`ModelNotReady`."""
        model = self._current
        if model is None:
            raise ModelNotReady(
                f"no model is being served yet: model {self._settings.model_name!r} has no loadable "
                f"{self._alias!r} version in the registry (run the pipeline: make run)"
            )
        return model

    def resolve_alias(self) -> str | None:
        """The version behind the alias (or the version source), or None if there is none."""
        if self._version_source is not None:
            return self._version_source()
        return resolve_alias(self._settings, self._alias)

    def unload(self) -> LoadedModel | None:
        """Stop serving the current model (a rollout's candidate once the rollout ended); returns it."""
        with self._swap_lock:
            model, self._current, self._refused, self._retry = self._current, None, None, None
            return model

    def refresh(self, prepare: Callable[[LoadedModel], None] | None = None) -> bool:
        """Load the alias' version if it differs from the current one. True if a new model was swapped in.

        ``prepare`` runs on the loaded model before it is swapped in (the feature store warm-up): requests, and
        readiness, only ever see a model whose features are ready to be fetched. Never raises.
        """
        with self._swap_lock:
            try:
                version = self.resolve_alias()
            except Exception as error:  # the registry being down must not kill the watcher
                _log.warning("cannot reach the model registry: %s", error)
                self._publish_skew(None, reachable=False)
                return False
            current = self._current
            if version is None or (current is not None and current.version == version) or version == self._refused:
                self._publish_skew(version)
                return False
            retry = self._retry
            if retry is not None and retry.version == version and time.monotonic() < retry.next_at:
                self._publish_skew(version)
                return False
            try:
                model = load_version(self._settings, version, threshold_override=self._threshold_override)
                if prepare is not None:
                    prepare(model)
            except Exception as error:  # a refusal or a retry, never a crash: the process must stay up
                self._failed(version, error, current)
                self._publish_skew(version)
                return False
            self._refused = None
            self._retry = None
            self._current = model  # one reference assignment: requests see the old or the new model, never half
            self._metrics.reloads.labels("success").inc()
            if self._primary:
                if current is not None:
                    self._metrics.model_info.labels(current.name, current.version, current.feature_service).set(0)
                self._metrics.model_info.labels(model.name, model.version, model.feature_service).set(1)
                publish_model(self._metrics, model)
                self._publish_skew(version)
            _log.info(
                "serving model version",
                extra={
                    "model_name": model.name,
                    "model_version": model.version,
                    "previous": current and current.version,
                    "role": "champion" if self._primary else "candidate",
                },
            )
            return True

    def _failed(self, version: str, error: Exception, current: LoadedModel | None) -> None:
        failure = (
            error
            if isinstance(error, ModelLoadError)
            else ModelLoadError(
                f"loading version {version} failed: {type(error).__name__}: {error}",
                reason="load",
                transient=is_transient(error),
            )
        )
        self._metrics.reloads.labels("failure").inc()
        keeping = current.version if current else "none"
        if failure.transient:
            attempts = self._retry.attempts + 1 if self._retry is not None and self._retry.version == version else 1
            delay = min(self._retry_base_s * 2 ** (attempts - 1), self._retry_max_s)
            self._retry = _Retry(version, attempts, time.monotonic() + delay)
            self._metrics.load_retries.inc()
            _log.warning(
                "model version %s could not be loaded (attempt %d, retrying in %.0f s), keeping %s: %s",
                version,
                attempts,
                delay,
                keeping,
                failure,
            )
            return
        # Remembered until the alias moves: no reload (and no error line) every poll for a broken version.
        self._refused = version
        self._retry = None
        self._metrics.refusals.labels(failure.reason).inc()
        _log.error("model version %s refused (%s), keeping %s: %s", version, failure.reason, keeping, failure)

    def _publish_skew(self, alias_version: str | None, *, reachable: bool = True) -> None:
        """How long the served version has differed from the alias' (0 while they agree), and whether too long."""
        if not self._primary:
            return
        now = time.monotonic()
        if reachable:
            current = self._current
            in_sync = alias_version is None or (current is not None and current.version == alias_version)
            if in_sync:
                self._skew_since = None
            elif self._skew_since is None:
                self._skew_since = now
        skew = 0.0 if self._skew_since is None else now - self._skew_since
        self._metrics.alias_skew.set(skew)
        self._metrics.behind_alias.set(1.0 if skew > self._max_alias_skew_s else 0.0)
