"""The model contract: how a registered model version is named, found, loaded, checked and called.

Everything that scores goes through here: the evaluate stage (a logged model, before registration), the gate
and ``mlops promote``/``compare`` (registered versions), batch scoring, the service and the benchmarks. A
:class:`LoadedModel` carries what a scorer needs besides the estimator: name, version, run, feature service,
feature order (the MLflow signature's), the decision threshold recorded on the version at registration (tag
``decision_threshold``), the drift reference and the holdout metrics. The scoring path calls the scikit-learn
estimator directly on a NumPy matrix in signature order: no pyfunc wrapper, no pandas.

MLflow is reached through an explicit client (:func:`mlops_recipes.io.tracking.client`); artifacts are
downloaded with explicit URIs, never through MLflow's process-wide tracking URI.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mlops_recipes.core.drift import REFERENCE_ARTIFACT, DriftReference, DriftWindow
from mlops_recipes.core.request_features import model_features
from mlops_recipes.errors import ReportedError
from mlops_recipes.settings import Settings
from mlops_recipes.views import UnknownFeatureService

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

_log = logging.getLogger(__name__)

# Tags on a registered version (written by the register stage, read back here).
FEATURE_SERVICE_TAG = "feature_service"
THRESHOLD_TAG = "decision_threshold"


def model_uri(name: str, version: str | int | None = None, *, alias: str | None = None) -> str:
    """The ``models:/`` URI of a registered version (``models:/<name>/<version>``) or alias (``models:/<name>@<a>``)."""
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version and alias")
    return f"models:/{name}/{version}" if alias is None else f"models:/{name}@{alias}"


class ModelLoadError(ReportedError, RuntimeError):
    """A model version could not be loaded or failed a check.

    ``reason`` names the check (``load``, ``signature``, ``features``, ``feature_service``, ``threshold``,
    ``drift_reference``, ``warm_up``); ``transient`` says the cause may go away by itself (the registry or the
    artifact store was unreachable), so loading the same version is worth retrying, where a deterministic failure
    is not.
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


class ProbabilityEstimator(Protocol):
    """What the contract calls on a loaded estimator (a scikit-learn classifier or Pipeline)."""

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Class probabilities per row; column 1 is the fraud probability."""
        ...


class MissingFeaturesError(ReportedError, KeyError):
    """A frame to score lacks columns the model reads (a holdout built for another feature set)."""


@dataclass(frozen=True)
class ScoringModel:
    """An estimator with the feature order of its signature: what scoring a frame or a matrix needs."""

    uri: str
    features: tuple[str, ...]
    estimator: ProbabilityEstimator

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Fraud probabilities for rows of ``matrix`` (columns in ``features`` order)."""
        return np.asarray(self.estimator.predict_proba(matrix)[:, 1], dtype=np.float64)

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Fraud probabilities for the rows of ``frame``, its columns picked in ``features`` order."""
        missing = sorted(set(self.features) - set(frame.columns))
        if missing:
            raise MissingFeaturesError(f"the data lacks features the model {self.uri} needs: {missing}")
        return self.predict(frame[list(self.features)].to_numpy(dtype="float64"))


@dataclass(frozen=True)
class LoadedModel(ScoringModel):
    """One loaded registered version, immutable: swapping replaces the whole object."""

    name: str
    version: str
    run_id: str | None
    feature_service: str
    # Probabilities at or above it are flagged: the threshold the gate's metrics were computed at.
    threshold: float
    # The training-time summary the service compares live traffic with; None for models logged without one.
    drift_reference: DriftReference | None = None
    # The run's holdout metrics (``holdout_*`` from the evaluate stage), exported by the service as gauges.
    holdout_metrics: Mapping[str, float] = field(default_factory=dict)

    def with_threshold(self, override: float | None) -> LoadedModel:
        """This version deciding at ``override`` instead of its recorded threshold (logged), or unchanged."""
        if override is None or override == self.threshold:
            return self
        _log.warning(
            "%s decides at the overriding threshold %s, not at the %s recorded on the version (its gate metrics)",
            self.uri,
            override,
            self.threshold,
        )
        return replace(self, threshold=override)


def _client(settings: Settings) -> MlflowClient:
    """The registry client every load and alias lookup goes through (the fault-injection tests wrap it)."""
    from mlops_recipes.io.tracking import client

    return client(settings)


def registry_client(settings: Settings) -> MlflowClient:
    """The registry client the loader reads versions with (the rollout watcher reads its record with it too)."""
    return _client(settings)


def resolve_alias(settings: Settings, alias: str) -> str | None:
    """The version of ``settings.model_name`` behind ``alias``, or None if there is none."""
    from mlops_recipes.io.registry import alias_version

    version = alias_version(_client(settings), settings.model_name, alias)
    return None if version is None else str(version.version)


def _download(settings: Settings, location: str) -> str:
    """A local path with the artifacts at ``location`` (already local for a file store: no copy)."""
    import mlflow

    return str(
        mlflow.artifacts.download_artifacts(
            artifact_uri=location,
            tracking_uri=settings.resolved_tracking_uri,
            registry_uri=settings.resolved_registry_uri,
        )
    )


def _load_estimator(settings: Settings, uri: str, location: str) -> ScoringModel:
    """The estimator at ``location`` and the feature order of its signature, checked against the contract."""
    import mlflow

    try:
        path = _download(settings, location)
        signature = mlflow.models.Model.load(path).signature
        estimator = mlflow.sklearn.load_model(path)
    except Exception as error:
        raise ModelLoadError(f"cannot load {uri}: {error}", transient=is_transient(error)) from error
    features = tuple(signature.inputs.input_names()) if signature is not None else ()
    if not features:
        raise ModelLoadError(f"{uri} has no input signature: cannot tell which features it reads", reason="signature")
    unknown = sorted(set(features) - set(model_features(settings.contract())))
    if unknown:
        raise ModelLoadError(f"{uri} reads features the data contract does not provide: {unknown}", reason="features")
    return ScoringModel(uri, features, estimator)


def _check_service_inputs(settings: Settings, uri: str, service: str, features: Sequence[str]) -> None:
    """Refuse a version whose feature service no view declares, or whose inputs its service does not provide."""
    try:
        provided = set(model_features(settings.contract(), service))
    except UnknownFeatureService as error:
        raise ModelLoadError(
            f"the feature_service tag of {uri} names {service!r}, which no feature view declares: {error}",
            reason="feature_service",
        ) from error
    outside = sorted(set(features) - provided)
    if outside:
        raise ModelLoadError(
            f"{uri} reads features its feature service {service!r} does not provide: {outside}", reason="features"
        )


def load_logged(settings: Settings, model_id: str) -> ScoringModel:
    """A model logged by the train stage (``models:/<model_id>``), not registered yet: the evaluate stage's."""
    uri = f"models:/{model_id}"
    try:
        location = _client(settings).get_logged_model(model_id).artifact_location
    except Exception as error:
        raise ModelLoadError(f"cannot load {uri}: {error}", transient=is_transient(error)) from error
    return _load_estimator(settings, uri, location)


def _threshold(tags: Mapping[str, str], uri: str) -> float:
    raw = tags.get(THRESHOLD_TAG)
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise ModelLoadError(
            f"{uri} has no usable {THRESHOLD_TAG} tag (got {raw!r}): cannot tell at which threshold it decides; "
            "register it with `mlops register`, which records the threshold its gate metrics were computed at",
            reason="threshold",
        )
    return value


def version_artifacts(settings: Settings, version: str) -> str:
    """A local path with a registered version's model files (for tools that load it another way, e.g. pyfunc)."""
    return _download(settings, _client(settings).get_model_version_download_uri(settings.model_name, version))


def load_version(settings: Settings, version: str, *, threshold_override: float | None = None) -> LoadedModel:
    """Load a version of ``settings.model_name`` and check it with a warm-up prediction.

    ``threshold_override`` (the service's ``SERVING_THRESHOLD``) replaces the recorded threshold, with a warning.
    """
    name = settings.model_name
    uri = model_uri(name, version)
    try:
        client = _client(settings)
        meta = client.get_model_version(name, version)
        location = client.get_model_version_download_uri(name, version)
    except Exception as error:
        raise ModelLoadError(f"cannot load {uri}: {error}", transient=is_transient(error)) from error
    scoring = _load_estimator(settings, uri, location)
    feature_service = meta.tags.get(FEATURE_SERVICE_TAG)
    if not feature_service:
        raise ModelLoadError(
            f"{uri} has no feature_service tag: cannot tell which features to fetch", reason="feature_service"
        )
    _check_service_inputs(settings, uri, feature_service, scoring.features)
    threshold = _threshold(meta.tags, uri)
    reference = _drift_reference(settings, meta.run_id, uri)
    if reference is not None:
        try:  # the window the service will fill: a reference without a histogram per input cannot be compared
            DriftWindow(reference, scoring.features, capacity=1)
        except ValueError as error:
            raise ModelLoadError(
                f"{uri} has a drift reference that does not match its signature: {error}", reason="drift_reference"
            ) from error
    model = LoadedModel(
        uri=uri,
        features=scoring.features,
        estimator=scoring.estimator,
        name=name,
        version=str(version),
        run_id=meta.run_id,
        feature_service=feature_service,
        threshold=threshold,
        drift_reference=reference,
        holdout_metrics=_holdout_metrics(client, meta.run_id),
    ).with_threshold(threshold_override)
    _warm_up(model)
    return model


def _warm_up(model: LoadedModel) -> None:
    """One prediction on an all-missing row (the worst case online): it must run and give a probability."""
    uri = model.uri
    try:
        warm = model.predict(np.full((1, len(model.features)), np.nan))
    except Exception as error:  # whatever the estimator raises: the version is unusable, not the process
        raise ModelLoadError(
            f"{uri} failed its warm-up prediction: {type(error).__name__}: {error}", reason="warm_up"
        ) from error
    if warm.shape != (1,) or math.isnan(float(warm[0])) or not 0.0 <= float(warm[0]) <= 1.0:
        raise ModelLoadError(f"{uri} failed its warm-up prediction (got {warm!r})", reason="warm_up")


def _drift_reference(settings: Settings, run_id: str | None, uri: str) -> DriftReference | None:
    """The drift reference logged with the model's run, or None (drift monitoring off for this model)."""
    import json

    import mlflow

    if run_id is None:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=settings.resolved_tracking_uri
        )
        with open(path, encoding="utf-8") as handle:
            return DriftReference.from_dict(json.load(handle))
    except Exception as error:  # optional: an older model, or a store without the artifact, still serves
        _log.warning("%s has no usable drift reference (%s): drift gauges stay unset", uri, error)
        return None


def _holdout_metrics(client: MlflowClient, run_id: str | None) -> dict[str, float]:
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


def load_alias(settings: Settings, alias: str, *, threshold_override: float | None = None) -> LoadedModel:
    """Load the version behind ``alias`` (e.g. the champion), or explain that there is none."""
    version = resolve_alias(settings, alias)
    if version is None:
        raise ModelLoadError(f"model {settings.model_name!r} has no {alias!r} version; run the pipeline first")
    return load_version(settings, version, threshold_override=threshold_override)
