"""Loading registered models for scoring, shared by the online service and batch scoring.

The scoring path calls the scikit-learn estimator directly on a NumPy matrix in the column order of the
model's MLflow signature: no pyfunc wrapper, no pandas.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops_recipes.core.drift import REFERENCE_ARTIFACT, DriftReference, DriftWindow
from mlops_recipes.core.request_features import model_features
from mlops_recipes.settings import Settings

_log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model version could not be loaded or failed a check.

    ``reason`` names the check (``load``, ``signature``, ``features``, ``feature_service``, ``drift_reference``,
    ``warm_up``); ``transient`` says the cause may go away by itself (the registry or the artifact store was
    unreachable), so loading the same version is worth retrying, where a deterministic failure is not.
    """

    def __init__(self, message: str, *, reason: str = "load", transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient


# Causes that say "could not reach it", not "it is broken": connection failures, time-outs, a database that is
# locked or cannot be opened right now, an HTTP 5xx/429 from a tracking server.
_TRANSIENT_TYPES = ("ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "OperationalError", "MaxRetryError")
_TRANSIENT_TEXT = (
    "connection refused",
    "max retries exceeded",
    "temporarily unavailable",
    "timed out",
    "database is locked",
    "unable to open database file",
    "too many 500 error responses",
    "too many 503 error responses",
    "too many 429 error responses",
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a failure to reach a store rather than a broken model version."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError) or type(current).__name__ in _TRANSIENT_TYPES:
            return True
        if any(text in str(current).lower() for text in _TRANSIENT_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version, immutable: swapping replaces the whole object."""

    name: str
    version: str
    run_id: str | None
    feature_service: str
    features: tuple[str, ...]
    estimator: Any
    # The training-time summary the service compares live traffic with; None for models logged without one.
    drift_reference: DriftReference | None = None
    # The run's holdout metrics (``holdout_*`` from the evaluate stage), exported by the service as gauges.
    holdout_metrics: Mapping[str, float] = field(default_factory=dict)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Fraud probabilities for rows of ``matrix`` (columns in ``features`` order)."""
        return np.asarray(self.estimator.predict_proba(matrix)[:, 1], dtype=np.float64)


def _client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.resolved_tracking_uri, registry_uri=settings.resolved_registry_uri)


def registry_client(settings: Settings) -> Any:
    """The registry client the loader reads versions with (the rollout watcher reads its record with it too)."""
    return _client(settings)


def resolve_alias(settings: Settings, alias: str) -> str | None:
    """The version of ``settings.model_name`` behind ``alias``, or None if there is none."""
    from mlops_recipes.io.registry import alias_version

    version = alias_version(_client(settings), settings.model_name, alias)
    return None if version is None else str(version.version)


def load_version(settings: Settings, version: str) -> LoadedModel:
    """Load a version of ``settings.model_name`` and check it with a warm-up prediction."""
    import mlflow

    name = settings.model_name
    uri = f"models:/{name}/{version}"
    try:
        client = _client(settings)
        meta = client.get_model_version(name, version)
        mlflow.set_tracking_uri(settings.resolved_tracking_uri)
        mlflow.set_registry_uri(settings.resolved_registry_uri)
        info = mlflow.models.get_model_info(uri)
        estimator = mlflow.sklearn.load_model(uri)
    except Exception as error:
        raise ModelLoadError(f"cannot load {uri}: {error}", transient=is_transient(error)) from error
    if info.signature is None:
        raise ModelLoadError(f"{uri} has no input signature: cannot tell which features it reads", reason="signature")
    features = tuple(info.signature.inputs.input_names())
    unknown = sorted(set(features) - set(model_features(settings.contract())))
    if unknown:
        raise ModelLoadError(f"{uri} reads features the data contract does not provide: {unknown}", reason="features")
    feature_service = meta.tags.get("feature_service")
    if not feature_service:
        raise ModelLoadError(
            f"{uri} has no feature_service tag: cannot tell which features to fetch", reason="feature_service"
        )
    reference = _drift_reference(meta.run_id, uri)
    if reference is not None:
        try:  # the window the service will fill: a reference without a histogram per input cannot be compared
            DriftWindow(reference, features, capacity=1)
        except ValueError as error:
            raise ModelLoadError(
                f"{uri} has a drift reference that does not match its signature: {error}", reason="drift_reference"
            ) from error
    model = LoadedModel(
        name,
        str(version),
        meta.run_id,
        feature_service,
        features,
        estimator,
        drift_reference=reference,
        holdout_metrics=_holdout_metrics(client, meta.run_id),
    )
    _warm_up(model, uri)
    return model


def _warm_up(model: LoadedModel, uri: str) -> None:
    """One prediction on an all-missing row (the worst case online): it must run and give a probability."""
    try:
        warm = model.predict(np.full((1, len(model.features)), np.nan))
    except Exception as error:  # whatever the estimator raises: the version is unusable, not the process
        raise ModelLoadError(
            f"{uri} failed its warm-up prediction: {type(error).__name__}: {error}", reason="warm_up"
        ) from error
    if warm.shape != (1,) or math.isnan(float(warm[0])) or not 0.0 <= float(warm[0]) <= 1.0:
        raise ModelLoadError(f"{uri} failed its warm-up prediction (got {warm!r})", reason="warm_up")


def _drift_reference(run_id: str | None, uri: str) -> DriftReference | None:
    """The drift reference logged with the model's run, or None (drift monitoring off for this model)."""
    import mlflow

    if run_id is None:
        return None
    try:
        return DriftReference.from_dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_ARTIFACT}"))
    except Exception as error:  # optional: an older model, or a store without the artifact, still serves
        _log.warning("%s has no usable drift reference (%s): drift gauges stay unset", uri, error)
        return None


def _holdout_metrics(client: Any, run_id: str | None) -> dict[str, float]:
    """The evaluate stage's holdout metrics of the run, without their prefix (empty if there are none)."""
    from mlops_recipes.io.registry import METRIC_PREFIX

    if run_id is None:
        return {}
    try:
        metrics = client.get_run(run_id).data.metrics
    except Exception as error:  # informational only: never a reason to refuse a model
        _log.warning("cannot read the metrics of run %s: %s", run_id, error)
        return {}
    return {k.removeprefix(METRIC_PREFIX): float(v) for k, v in metrics.items() if k.startswith(METRIC_PREFIX)}


def load_alias(settings: Settings, alias: str) -> LoadedModel:
    """Load the version behind ``alias`` (e.g. the champion), or explain that there is none."""
    version = resolve_alias(settings, alias)
    if version is None:
        raise ModelLoadError(f"model {settings.model_name!r} has no {alias!r} version; run the pipeline first")
    return load_version(settings, version)
