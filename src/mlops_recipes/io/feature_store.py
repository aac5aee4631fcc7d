"""Feast, in-process: load, apply and materialize the definitions in ``feature_repo/``; build training sets.

No ``feast`` CLI calls (each costs ~11 s here); ``import feast`` (~7 s) is paid only by callers of this module.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_recipes.errors import ReportedError
from mlops_recipes.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


class FeatureStoreError(ReportedError, RuntimeError):
    """The feature repository or a store could not be used."""


@dataclass(frozen=True)
class Definitions:
    """The Feast objects declared in the feature repository."""

    entities: list[Any]
    data_sources: list[Any]
    feature_views: list[Any]
    feature_services: list[Any]

    def all(self) -> list[Any]:
        """Everything, in the order Feast applies them."""
        return [*self.data_sources, *self.entities, *self.feature_views, *self.feature_services]


def open_store(settings: Settings) -> FeatureStore:
    """The feature store configured by ``settings.feast_config`` in the feature repository."""
    repo = settings.feature_repo_path
    config = repo / settings.feast_config
    if not config.is_file():
        raise FeatureStoreError(f"Feast configuration not found: {config}")
    unset = unset_variables(config.read_text())
    if unset:
        # Feast would keep the literal ``${VAR}`` and fail later on a URL or a host it cannot parse.
        raise FeatureStoreError(f"{config.name} needs environment variable(s) that are not set: {', '.join(unset)}")
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo), fs_yaml_file=config)


_VARIABLE = re.compile(r"\$\{(\w+)\}")


def unset_variables(config_text: str) -> list[str]:
    """``${VAR}`` references of a Feast configuration (outside comment lines) that are unset or empty."""
    lines = (line for line in config_text.splitlines() if not line.lstrip().startswith("#"))
    names = {name for line in lines for name in _VARIABLE.findall(line)}
    return sorted(name for name in names if not os.environ.get(name))


def load_definitions(repo: Path) -> Definitions:
    """Import every top-level ``*.py`` of the feature repository and collect its Feast objects."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    found: dict[type, list[Any]] = {Entity: [], DataSource: [], FeatureView: [], FeatureService: []}
    for path in sorted(repo.glob("*.py")):
        module_name = f"_feature_repo_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise FeatureStoreError(f"cannot import feature definitions from {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise FeatureStoreError(f"error in feature definitions {path}: {error}") from error
        for value in vars(module).values():
            for kind, bucket in found.items():
                if isinstance(value, kind) and not any(value is seen for seen in bucket):
                    bucket.append(value)
    return Definitions(
        entities=found[Entity],
        data_sources=found[DataSource],
        feature_views=found[FeatureView],
        feature_services=found[FeatureService],
    )


def apply_definitions(store: FeatureStore, definitions: Definitions) -> dict[str, list[str]]:
    """Register the definitions and remove registry objects the repository no longer declares."""
    project = store.project
    declared = {
        "feature_services": {fs.name for fs in definitions.feature_services},
        "feature_views": {fv.name for fv in definitions.feature_views},
        "entities": {e.name for e in definitions.entities},
    }
    from feast.errors import ProjectNotFoundException

    stale: list[Any] = []
    registry = store.registry
    try:
        stale += [o for o in registry.list_feature_services(project) if o.name not in declared["feature_services"]]
        stale += [o for o in registry.list_feature_views(project) if o.name not in declared["feature_views"]]
        stale += [
            o for o in registry.list_entities(project) if o.name not in declared["entities"] and o.name != "__dummy"
        ]
    except ProjectNotFoundException:  # a registry that has never seen this project holds nothing stale
        stale = []
    # Anything else (a registry that cannot be read or parsed) propagates: applying over it could lose objects.
    store.apply(definitions.all(), objects_to_delete=stale, partial=False)
    return {
        "applied": sorted(declared["feature_views"] | declared["feature_services"] | declared["entities"]),
        "deleted": sorted(o.name for o in stale),
    }


def materialize(store: FeatureStore, *, start: dt.datetime, end: dt.datetime) -> None:
    """Load the latest feature rows in ``[start, end]`` into the online store.

    The range is explicit: on a fresh store ``materialize_incremental`` would start at now - TTL and miss older
    data without a word.
    """
    store.materialize(start_date=start, end_date=end)


def source_path(view: Any) -> str | None:
    """The Parquet path behind a feature view's batch source, if it is a file source."""
    path = getattr(view.batch_source, "path", None)
    return str(path) if path else None


def feature_references(store: FeatureStore, service_name: str) -> list[str]:
    """``view:feature`` references of a feature service, in its declared order."""
    from feast.errors import FeatureServiceNotFoundException

    try:
        service = store.get_feature_service(service_name)
    except FeatureServiceNotFoundException:
        raise FeatureStoreError(
            f"feature service {service_name!r} is not registered; run the features stage (mlops features)"
        ) from None
    return [
        f"{projection.name_alias or projection.name}:{feature.name}"
        for projection in service.feature_view_projections
        for feature in projection.features
    ]


# Entity rows per point-in-time join. Feast's DuckDB join pairs each entity row with every feature row of the
# same key inside the TTL before picking the latest, so memory grows with rows x history; bounded chunks keep
# the 10x data set at about the memory of the 1x one (see docs/benchmarks.md).
HISTORICAL_CHUNK_ROWS = 200_000


def historical_features(
    store: FeatureStore, entity_df: pd.DataFrame, service_name: str, *, chunk_rows: int = HISTORICAL_CHUNK_ROWS
) -> pd.DataFrame:
    """Point-in-time join of the service's features onto ``entity_df`` (one row out per row in)."""
    import pandas as pd

    service = store.get_feature_service(service_name)
    parts = []
    for start in range(0, len(entity_df), chunk_rows):
        chunk = entity_df.iloc[start : start + chunk_rows]
        part: pd.DataFrame = store.get_historical_features(entity_df=chunk, features=service).to_df()
        if len(part) != len(chunk):
            raise FeatureStoreError(
                f"point-in-time join returned {len(part)} rows for {len(chunk)} entity rows; "
                "the offline store dropped or duplicated rows"
            )
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else entity_df.iloc[0:0]


def online_features(store: FeatureStore, entity_rows: list[dict[str, Any]], service_name: str) -> dict[str, list[Any]]:
    """Online lookup of the service's features for the given entity keys."""
    service = store.get_feature_service(service_name)
    response = store.get_online_features(features=service, entity_rows=entity_rows)
    result: dict[str, list[Any]] = response.to_dict()
    return result


# Feature views whose online rows the service updates after every transaction it scores (tag ``refresh``):
# batch materialization never writes them, because Feast's SQLite writer replaces a row whatever its timestamp
# (Redis' skips older ones) and an older batch row would undo the pushed ones. Their rebuild goes through the
# customer event log instead (mlops_recipes.io.customer_events), which can only move forward.
PER_TRANSACTION = "per-transaction"


def per_transaction_views(store: FeatureStore) -> list[str]:
    """Names of the views tagged ``refresh: per-transaction``."""
    return sorted(v.name for v in store.list_feature_views() if v.tags.get("refresh") == PER_TRANSACTION)


def batch_views(store: FeatureStore) -> list[str]:
    """Names of the online views that batch materialization loads (every one not updated per transaction)."""
    return sorted(v.name for v in store.list_feature_views() if v.online and v.tags.get("refresh") != PER_TRANSACTION)


def materialize_batch_views(
    store: FeatureStore, *, start: dt.datetime, end: dt.datetime, include_per_transaction: bool = False
) -> list[str]:
    """:func:`materialize` restricted to :func:`batch_views` (or every online view); returns their names."""
    views = (
        sorted(v.name for v in store.list_feature_views() if v.online)
        if include_per_transaction
        else batch_views(store)
    )
    if views:
        store.materialize(start_date=start, end_date=end, feature_views=views)
    return views


class OnlineRowWriter:
    """Writes rows of one feature view through Feast's online write path (what ``push`` and materialization call).

    ``FeatureStore.write_to_online_store`` costs ~2.7 ms a row here (a DataFrame → Arrow → protobuf round trip);
    the provider's ``online_write_batch`` with protobuf values built from the view's schema costs ~0.12 ms, so the
    hot path builds them itself. Values follow the view's declared types (Int64 / Float64).
    """

    def __init__(self, store: FeatureStore, view_name: str) -> None:
        from feast.types import Int64

        self._store = store
        self._view = store.get_feature_view(view_name)
        (self._join_key,) = self._view.join_keys
        self._ints = {f.name for f in self._view.features if f.dtype == Int64}
        self.view_name = view_name
        self._provider = store._get_provider()
        if getattr(store.config.online_store, "type", None) == "sqlite":
            # Feast's SQLite connection syncs the disk on every commit (synchronous=FULL): one write per scored
            # transaction then waits on the disk (10-25 ms on a busy shared disk here, against 0.1 ms without).
            # WAL (set on the file by the event log) + NORMAL keeps the file consistent after any crash; a power
            # cut may lose the last writes, which the features stage rebuilds from the data.
            online_store: Any = self._provider.online_store
            online_store._get_conn(store.config).execute("PRAGMA synchronous=NORMAL")

    def __call__(self, rows: Sequence[tuple[int, dt.datetime, dict[str, float]]]) -> None:
        """Write ``(entity key, event timestamp, {feature: value})`` rows."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        data: list[tuple[Any, dict[str, Any], dt.datetime, dt.datetime | None]] = []
        for key, stamp, values in rows:
            entity = EntityKey(join_keys=[self._join_key], entity_values=[Value(int64_val=int(key))])
            protos = {
                name: Value(int64_val=int(value)) if name in self._ints else Value(double_val=float(value))
                for name, value in values.items()
            }
            data.append((entity, protos, stamp, None))
        # The provider is Feast's own (local provider: the configured online store); no public call skips pandas.
        self._provider.online_write_batch(self._store.config, self._view, data, progress=None)
