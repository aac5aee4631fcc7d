"""The served model: resolve the registry alias, load, warm up, and hot-swap when the alias moves.

The hot path calls the scikit-learn estimator directly on a NumPy matrix (no pyfunc, no pandas), in the
column order of the model's MLflow signature.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_recipes.core.request_features import MODEL_FEATURES
from mlops_recipes.settings import Settings
from serving.metrics import ServiceMetrics

_log = logging.getLogger("serving.model")


class ModelNotReady(RuntimeError):
    """No model is loaded yet (none registered under the alias, or loading failed)."""


class ModelLoadError(RuntimeError):
    """A model version could not be loaded or failed its warm-up."""


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version, immutable: swapping replaces the whole object."""

    name: str
    version: str
    run_id: str | None
    feature_service: str
    features: tuple[str, ...]
    estimator: Any

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Fraud probabilities for rows of ``matrix`` (columns in ``features`` order)."""
        return np.asarray(self.estimator.predict_proba(matrix)[:, 1], dtype=np.float64)


def load_version(settings: Settings, name: str, version: str) -> LoadedModel:
    """Load ``name`` version ``version`` from the registry and check it with a warm-up prediction."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"models:/{name}/{version}"
    try:
        client = MlflowClient(tracking_uri=settings.resolved_tracking_uri, registry_uri=settings.resolved_registry_uri)
        meta = client.get_model_version(name, version)
        mlflow.set_registry_uri(settings.resolved_registry_uri)
        mlflow.set_tracking_uri(settings.resolved_tracking_uri)
        info = mlflow.models.get_model_info(uri)
        estimator = mlflow.sklearn.load_model(uri)
    except Exception as error:
        raise ModelLoadError(f"cannot load {uri}: {error}") from error
    if info.signature is None:
        raise ModelLoadError(f"{uri} has no input signature: cannot tell which features it reads")
    features = tuple(info.signature.inputs.input_names())
    unknown = sorted(set(features) - set(MODEL_FEATURES))
    if unknown:
        raise ModelLoadError(f"{uri} reads features this service cannot compute: {unknown}")
    feature_service = meta.tags.get("feature_service")
    if not feature_service:
        raise ModelLoadError(f"{uri} has no feature_service tag: cannot tell which features to fetch")
    model = LoadedModel(name, str(version), meta.run_id, feature_service, features, estimator)
    warm = model.predict(np.full((1, len(features)), np.nan))  # an all-missing row: the worst case online
    if warm.shape != (1,) or not (0.0 <= float(warm[0]) <= 1.0) or math.isnan(float(warm[0])):
        raise ModelLoadError(f"{uri} failed its warm-up prediction (got {warm!r})")
    return model


class ModelManager:
    """Holds the current model and replaces it atomically when the registry alias moves."""

    def __init__(self, *, settings: Settings, alias: str, metrics: ServiceMetrics) -> None:
        self._settings = settings
        self._alias = alias
        self._metrics = metrics
        self._current: LoadedModel | None = None
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
        from mlflow import MlflowClient

        from mlops_recipes.io.registry import alias_version

        client = MlflowClient(
            tracking_uri=self._settings.resolved_tracking_uri, registry_uri=self._settings.resolved_registry_uri
        )
        version = alias_version(client, self._settings.model_name, self._alias)
        return None if version is None else str(version.version)

    def refresh(self) -> bool:
        """Load the alias' version if it differs from the current one. True if a new model was swapped in."""
        with self._swap_lock:
            try:
                version = self.resolve_alias()
            except Exception as error:  # the registry being down must not kill the watcher
                _log.warning("cannot reach the model registry: %s", error)
                return False
            current = self._current
            if version is None or (current is not None and current.version == version):
                return False
            try:
                model = load_version(self._settings, self._settings.model_name, version)
            except ModelLoadError as error:
                self._metrics.reloads.labels("failure").inc()
                _log.error("model reload failed, keeping %s: %s", current.version if current else "none", error)
                return False
            self._current = model  # one reference assignment: requests see the old or the new model, never half
            self._metrics.reloads.labels("success").inc()
            if current is not None:
                self._metrics.model_info.labels(current.name, current.version, current.feature_service).set(0)
            self._metrics.model_info.labels(model.name, model.version, model.feature_service).set(1)
            _log.info(
                "serving model version",
                extra={
                    "model_name": model.name,
                    "model_version": model.version,
                    "previous": current and current.version,
                },
            )
            return True
