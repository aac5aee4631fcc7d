"""The served model: resolve the registry alias, load, warm up, and hot-swap when the alias moves.

Loading and the model call live in :mod:`mlops_recipes.io.models` (batch scoring uses them too); this module
adds the watcher's state: which version is served, which one was refused, and the metrics of each swap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mlops_recipes.io.models import LoadedModel, ModelLoadError, load_version, resolve_alias
from mlops_recipes.settings import Settings
from serving.metrics import ServiceMetrics
from serving.monitoring import publish_model

__all__ = ["LoadedModel", "ModelLoadError", "ModelManager", "ModelNotReady"]

_log = logging.getLogger("serving.model")


class ModelNotReady(RuntimeError):
    """No model is loaded yet (none registered under the alias, or loading failed)."""


class ModelManager:
    """Holds the current model and replaces it atomically when the registry alias moves."""

    def __init__(self, *, settings: Settings, alias: str, metrics: ServiceMetrics) -> None:
        self._settings = settings
        self._alias = alias
        self._metrics = metrics
        self._current: LoadedModel | None = None
        self._refused: str | None = None
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
        """The version behind the alias, or None if there is none."""
        return resolve_alias(self._settings, self._alias)

    def refresh(self, prepare: Callable[[LoadedModel], None] | None = None) -> bool:
        """Load the alias' version if it differs from the current one. True if a new model was swapped in.

        ``prepare`` runs on the loaded model before it is swapped in (the feature store warm-up): requests, and
        readiness, only ever see a model whose features are ready to be fetched.
        """
        with self._swap_lock:
            try:
                version = self.resolve_alias()
            except Exception as error:  # the registry being down must not kill the watcher
                _log.warning("cannot reach the model registry: %s", error)
                return False
            current = self._current
            if version is None or (current is not None and current.version == version) or version == self._refused:
                return False
            try:
                model = load_version(self._settings, version)
            except ModelLoadError as error:
                # Remembered until the alias moves: no reload (and no error line) every poll for a broken version.
                self._refused = version
                self._metrics.reloads.labels("failure").inc()
                _log.error("model reload failed, keeping %s: %s", current.version if current else "none", error)
                return False
            self._refused = None
            if prepare is not None:
                prepare(model)
            self._current = model  # one reference assignment: requests see the old or the new model, never half
            self._metrics.reloads.labels("success").inc()
            if current is not None:
                self._metrics.model_info.labels(current.name, current.version, current.feature_service).set(0)
            self._metrics.model_info.labels(model.name, model.version, model.feature_service).set(1)
            publish_model(self._metrics, model)
            _log.info(
                "serving model version",
                extra={
                    "model_name": model.name,
                    "model_version": model.version,
                    "previous": current and current.version,
                },
            )
            return True
