"""The MLflow model registry, with aliases only (registry stages are deprecated).

``challenger`` marks the newest candidate, ``champion`` the model in production. Rollback moves ``champion``
back along the ``previous_champion`` tags that every promotion leaves.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from mlops_recipes.errors import ReportedError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION_TAG = "previous_champion"
METRIC_PREFIX = "holdout_"


class RegistryError(ReportedError, RuntimeError):
    """The registry cannot do what was asked (no such version, nothing to roll back to, ...)."""


def _missing(error: Exception) -> bool:
    code = getattr(error, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if _missing(error):
            return None
        raise


def get_version(client: MlflowClient, name: str, version: str | int) -> ModelVersion:
    """One model version, or a :class:`RegistryError` that says which does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as error:
        if _missing(error):
            raise RegistryError(f"model {name!r} has no version {version}") from None
        raise


def ensure_version(
    client: MlflowClient, name: str, *, model_uri: str, run_id: str, tags: dict[str, str]
) -> ModelVersion:
    """The registry version for ``model_uri``: found if already registered (idempotent), created otherwise.

    Creating one goes through ``mlflow.register_model``: call it inside :func:`mlops_recipes.io.tracking.fluent`.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="Card-transaction fraud model (mlops-recipes).")
    except MlflowException as error:
        if getattr(error, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    for existing in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        if existing.source == model_uri or model_uri.endswith(str(getattr(existing, "model_id", None) or "\0")):
            for key, value in tags.items():
                client.set_model_version_tag(name, existing.version, key, value)
            return client.get_model_version(name, existing.version)
    created = mlflow.register_model(model_uri=model_uri, name=name, tags=tags)
    return client.get_model_version(name, created.version)


def set_challenger(client: MlflowClient, name: str, version: str) -> None:
    """Mark ``version`` as the newest candidate."""
    client.set_registered_model_alias(name, CHALLENGER, version)


def set_champion(client: MlflowClient, name: str, version: str, *, reason: str) -> str | None:
    """Move ``champion`` to ``version``; remember the one it replaces for rollback. Returns that one."""
    current = alias_version(client, name, CHAMPION)
    previous = str(current.version) if current is not None else None
    if previous == str(version):
        return previous
    if previous is not None:
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, previous)
    client.set_model_version_tag(name, version, "promoted_at", dt.datetime.now(dt.UTC).isoformat())
    client.set_model_version_tag(name, version, "promotion_reason", reason[:4000])
    client.set_registered_model_alias(name, CHAMPION, version)
    return previous


def rollback_target(client: MlflowClient, name: str) -> tuple[str, str]:
    """(champion, the version it replaced): where a rollback would move ``champion``. Moves nothing."""
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"model {name!r} has no champion to roll back")
    previous = current.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RegistryError(f"champion v{current.version} of {name!r} has no previous champion to roll back to")
    get_version(client, name, previous)
    return str(current.version), str(previous)


def rollback(client: MlflowClient, name: str, *, champion: str, target: str) -> None:
    """Move ``champion`` from version ``champion`` back to ``target`` (see :func:`rollback_target`).

    Checking the target first takes a model load (``stages.register.rollback``): if the alias moved meanwhile
    (a promotion), the rollback is refused rather than undoing a change it never saw.
    """
    current = alias_version(client, name, CHAMPION)
    if current is None or str(current.version) != str(champion):
        now = "no champion" if current is None else f"champion v{current.version}"
        raise RegistryError(f"{name!r} changed during the rollback (v{champion} expected, {now}): run it again")
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_model_version_tag(name, champion, "rolled_back_at", dt.datetime.now(dt.UTC).isoformat())


def services_in_use(client: MlflowClient, name: str) -> dict[str, list[str]]:
    """The feature service of every version a registered alias points at, and of the champion's rollback target.

    Service name -> who uses it (``champion v3``, ``rollback target v2``, ...). The ``feature_service`` tag is what
    training wrote on the logged model and registration on the version; the service loads by it.
    """
    from mlflow.exceptions import MlflowException

    try:
        aliases = dict(client.get_registered_model(name).aliases)
    except MlflowException as error:
        if _missing(error):
            return {}
        raise
    users: dict[str, list[str]] = {}

    def add(version: ModelVersion, user: str) -> None:
        service = version.tags.get("feature_service")
        if service:
            users.setdefault(service, []).append(f"{user} v{version.version}")

    for alias, number in sorted(aliases.items()):
        version = get_version(client, name, number)
        add(version, alias)
        previous = version.tags.get(PREVIOUS_CHAMPION_TAG) if alias == CHAMPION else None
        if previous:
            add(get_version(client, name, previous), "rollback target")
    return users


def describe(client: MlflowClient, version: ModelVersion | None) -> dict[str, Any] | None:
    """Status of one version: number, run, holdout metrics, feature service, source."""
    if version is None:
        return None
    metrics: dict[str, float] = {}
    if version.run_id:
        run_metrics = client.get_run(version.run_id).data.metrics
        metrics = {k.removeprefix(METRIC_PREFIX): v for k, v in run_metrics.items() if k.startswith(METRIC_PREFIX)}
    return {
        "version": str(version.version),
        "run_id": version.run_id,
        "metrics": dict(sorted(metrics.items())),
        "feature_service": version.tags.get("feature_service"),
        "source": version.source,
        "aliases": sorted(version.aliases),
    }


def status(client: MlflowClient, name: str) -> dict[str, Any]:
    """Champion and challenger of ``name``."""
    return {
        "model_name": name,
        CHAMPION: describe(client, alias_version(client, name, CHAMPION)),
        CHALLENGER: describe(client, alias_version(client, name, CHALLENGER)),
    }
