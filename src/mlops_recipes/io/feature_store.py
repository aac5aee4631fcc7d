"""Feast, in-process: load, apply and materialize the definitions in ``feature_repo/``; build training sets.

No ``feast`` CLI calls (each costs ~11 s here); ``import feast`` (~7 s) is paid only by callers of this module.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
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

    store = FeatureStore(repo_path=str(repo), fs_yaml_file=config)
    try:
        # Feast connects its registry on first use (the SQL registry: Postgres); connect now, so that a registry
        # out of reach fails here with its name, not as a driver error in the middle of a stage or a request.
        store.registry  # noqa: B018 - the property creates (connects) the registry
    except Exception as error:
        raise FeatureStoreError(
            f"feature registry unavailable ({config.name}): {type(error).__name__}: {error}"
        ) from error
    if getattr(store.config.online_store, "type", None) == "sqlite":
        _cache_the_whole_file(store)
    return store


# SQLite's default page cache per connection is 2 MB, less than the demo's online store (~5 MB): a lookup of a
# random customer then read its pages from the OS again, and after each per-transaction write (whose pages sit in
# the WAL) more of them. With the file's pages cached and memory-mapped, the service's lookup took 168 µs of GIL
# time under load instead of 280 µs (py-spy, update on; docs/benchmarks.md). Limits, not allocations.
SQLITE_CACHE_KIB = 65_536
SQLITE_MMAP_BYTES = 256 * 1024 * 1024


def _cache_the_whole_file(store: FeatureStore) -> None:
    """Size the page cache and the memory map of Feast's SQLite connection (made here, reused by Feast).

    Only for a file that exists: Feast's connection would create it (and fail where its folder does not exist yet).
    """
    online_store: Any = store._get_provider().online_store
    if not Path(online_store._get_db_path(store.config)).is_file():
        return
    connection = online_store._get_conn(store.config)
    connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    connection.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")


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


class FeatureServiceInUse(FeatureStoreError):
    """Applying the definitions would change or remove a feature service that a registered model uses."""


# Who uses which feature service: service name -> users, e.g. {"fraud_model_v1": ["champion v3"]}.
ServiceUsers = Callable[[], Mapping[str, Sequence[str]]]


def apply_definitions(
    store: FeatureStore, definitions: Definitions, *, users: ServiceUsers | None = None
) -> dict[str, list[str]]:
    """Register the definitions and remove registry objects the repository no longer declares.

    ``users`` guards live models: a feature service a registered model uses is immutable (changing its
    features under the champion would put new feature values into production before any gate). When the
    definitions change or remove a registered service, ``users()`` is asked who uses it (only then: an
    unchanged apply needs no model registry) and :class:`FeatureServiceInUse` is raised before anything is
    applied if anyone does.
    """
    declared = {
        "feature_services": {fs.name for fs in definitions.feature_services},
        "feature_views": {fv.name for fv in definitions.feature_views},
        "entities": {e.name for e in definitions.entities},
    }
    registered = _registered(store)
    if users is not None:
        _refuse_changes_in_use(changed_services(registered, definitions), users)
    stale: list[Any] = [
        *(o for o in registered.feature_services if o.name not in declared["feature_services"]),
        *(o for o in registered.feature_views if o.name not in declared["feature_views"]),
        *(o for o in registered.entities if o.name not in declared["entities"] and o.name != "__dummy"),
    ]
    store.apply(definitions.all(), objects_to_delete=stale, partial=False)
    return {
        "applied": sorted(declared["feature_views"] | declared["feature_services"] | declared["entities"]),
        "deleted": sorted(o.name for o in stale),
    }


def _registered(store: FeatureStore) -> Definitions:
    """What the registry holds now (read past its cache); empty lists for a project never applied."""
    from feast.errors import ProjectNotFoundException

    registry, project = store.registry, store.project
    try:
        return Definitions(
            entities=registry.list_entities(project, allow_cache=False),
            data_sources=[],
            feature_views=registry.list_feature_views(project, allow_cache=False),
            feature_services=registry.list_feature_services(project, allow_cache=False),
        )
    except ProjectNotFoundException:  # a registry that has never seen this project holds nothing
        return Definitions(entities=[], data_sources=[], feature_views=[], feature_services=[])
    except Exception as error:  # anything else is the registry's: applying over it could lose objects
        raise FeatureStoreError(f"feature registry unavailable: {type(error).__name__}: {error}") from error


def service_definition(service: Any, definitions: Definitions) -> list[str]:
    """What a feature service means, one line per view it reads: entity keys and types, TTL, features and types.

    Descriptions, tags, owners and source locations are left out: they do not change a feature value.
    """
    views = {view.name: view for view in definitions.feature_views}
    entities = {entity.name: entity for entity in definitions.entities}
    lines = []
    for projection in service.feature_view_projections:
        view = views.get(projection.name)
        if view is None:
            lines.append(f"{projection.name}: no such feature view")
            continue
        keys = ", ".join(
            f"{entities[name].join_key}:{entities[name].value_type.name}" if name in entities else f"{name}:?"
            for name in sorted(view.entities)
        )
        features = ", ".join(f"{feature.name}:{feature.dtype}" for feature in projection.features)
        lines.append(f"{projection.name_alias or projection.name} (keys {keys}; ttl {view.ttl}): {features}")
    return lines


def changed_services(registered: Definitions, declared: Definitions) -> dict[str, str]:
    """Registered feature services the declared definitions change or remove: name -> what differs."""
    services = {service.name: service for service in declared.feature_services}
    changed = {}
    for service in registered.feature_services:
        if service.name not in services:
            changed[service.name] = "no longer declared"
            continue
        before = service_definition(service, registered)
        after = service_definition(services[service.name], declared)
        if before != after:
            differences = [f"registered {b!r}, declared {a!r}" for b, a in zip(before, after, strict=False) if b != a]
            if len(before) != len(after):
                differences.append(f"{len(before)} view(s) registered, {len(after)} declared")
            changed[service.name] = "; ".join(differences)
    return changed


def _refuse_changes_in_use(changed: Mapping[str, str], users: ServiceUsers) -> None:
    if not changed:
        return
    in_use = users()
    refused = {name: what for name, what in changed.items() if in_use.get(name)}
    if refused:
        details = "; ".join(
            f"{name!r} (used by {', '.join(in_use[name])}): {what}" for name, what in sorted(refused.items())
        )
        raise FeatureServiceInUse(
            f"the feature definitions change feature service(s) in use by registered models: {details}. "
            "A service in use is immutable: publish a new versioned service (e.g. fraud_model_v2, with new "
            "feature views for changed features), point features.service in params.yaml at it and train on it; "
            "retire the old one once no alias uses it."
        )


def materialize(store: FeatureStore, *, start: dt.datetime, end: dt.datetime) -> None:
    """Load the latest feature rows in ``[start, end]`` into the online store.

    The range is explicit: on a fresh store ``materialize_incremental`` would start at now - TTL and miss older
    data without a word.
    """
    store.materialize(start_date=start, end_date=end)


def reset_online_store(store: FeatureStore) -> list[str]:
    """Empty the online store's rows of every online view, keeping the registry as it is; returns the views.

    Replays rewind the store this way rather than with ``FeatureStore.teardown`` + apply: on the SQL registry
    (scaled profile) Feast 0.67's ``delete_project`` leaves ``feature_view_version_history`` behind, so the next
    apply of the same views inserts version 0 again and fails with a UniqueViolation. The definitions did not
    change, so the registry has nothing to redo; only the online rows go (Redis: the project's keys; SQLite: the
    file, whose tables are then created again).
    """
    views = [v for v in store.list_feature_views() if v.online]
    entities = store.list_entities()
    provider = store._get_provider()
    provider.teardown_infra(store.project, views, entities)
    provider.update_infra(
        store.project,
        tables_to_delete=[],
        tables_to_keep=views,
        entities_to_delete=[],
        entities_to_keep=entities,
        partial=False,
    )
    return sorted(v.name for v in views)


def source_path(view: Any) -> str | None:
    """The Parquet path behind a feature view's batch source, if it is a file source."""
    path = getattr(view.batch_source, "path", None)
    return str(path) if path else None


class FeatureServiceMissing(FeatureStoreError):
    """The registry has no feature service of that name."""


def feature_service(store: FeatureStore, service_name: str, *, refresh: bool = False) -> Any:
    """The registered feature service, or :class:`FeatureServiceMissing`.

    ``refresh``: when it is not found, refresh the registry cache and ask once more (a running process may hold a
    registry read before the service was applied). Other errors (a registry out of reach) propagate as they are.
    """
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(service_name)
    except FeatureServiceNotFoundException:
        if not refresh:
            raise FeatureServiceMissing(
                f"feature service {service_name!r} is not registered; run the features stage (mlops features)"
            ) from None
    store.refresh_registry()  # type: ignore[no-untyped-call]
    return feature_service(store, service_name)


def feature_references(store: FeatureStore, service_name: str) -> list[str]:
    """``view:feature`` references of a feature service, in its declared order."""
    service = feature_service(store, service_name)
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


def online_features(store: FeatureStore, entity_rows: list[dict[str, Any]], service: Any) -> dict[str, list[Any]]:
    """Online lookup of a feature service's features (its name, or the object a caller keeps) for entity keys."""
    if isinstance(service, str):
        service = feature_service(store, service)
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


def _is_batch(view: Any) -> bool:
    return bool(view.online) and view.tags.get("refresh") != PER_TRANSACTION


def batch_views(store: FeatureStore) -> list[str]:
    """Names of the online views that batch materialization loads (every one not updated per transaction)."""
    return sorted(v.name for v in store.list_feature_views() if _is_batch(v))


def materialized_until(store: FeatureStore) -> dict[str, float]:
    """Per batch view, the end of its latest materialization (Unix seconds); never-materialized views are absent.

    Read from the registry cache (``cache_ttl_seconds``), so a running process sees new runs. Views updated per
    transaction are not materialized: their freshness is the newest event written.
    """
    return {
        view.name: view.most_recent_end_time.timestamp()
        for view in store.list_feature_views()
        if _is_batch(view) and view.most_recent_end_time is not None
    }


def batch_sources(store: FeatureStore) -> dict[str, str | None]:
    """Per batch view, the Parquet path behind it (None for a source that is not a file)."""
    return {view.name: source_path(view) for view in store.list_feature_views() if _is_batch(view)}


def materialize_incremental(store: FeatureStore, *, end: dt.datetime) -> list[str]:
    """Load the batch views' rows from each one's last materialization up to ``end``; returns the views.

    Only batch views: a batch row would overwrite a fresher per-transaction one (see :data:`PER_TRANSACTION`).
    """
    views = batch_views(store)
    if views:
        store.materialize_incremental(end_date=end, feature_views=views)
    return views


def materialize_batch_views(store: FeatureStore, *, start: dt.datetime, end: dt.datetime) -> list[str]:
    """:func:`materialize` restricted to :func:`batch_views`; returns their names."""
    views = batch_views(store)
    if views:
        store.materialize(start_date=start, end_date=end, feature_views=views)
    return views


class OnlineRowWriter:
    """Writes rows of one feature view through Feast's online write path (what ``push`` and materialization call).

    ``FeatureStore.write_to_online_store`` costs ~2.7 ms a row here (a DataFrame → Arrow → protobuf round trip);
    the provider's ``online_write_batch`` with protobuf values built from the view's schema costs ~0.12 ms, so the
    hot path builds them itself. Values follow the view's declared types (Int64 / Float64).
    """

    def __init__(self, store: FeatureStore, view_name: str, *, one_statement: bool = True) -> None:
        """``one_statement``: on SQLite, write each batch in one upsert (:class:`_SqliteUpsert`), not Feast's loop."""
        from feast import ValueType
        from feast.types import Int64

        self._store = store
        self._view = store.get_feature_view(view_name)
        (self._join_key,) = self._view.join_keys
        (entity_name,) = self._view.entities
        self._string_keys = store.get_entity(entity_name).value_type == ValueType.STRING  # the contract's id type
        self._ints = {f.name for f in self._view.features if f.dtype == Int64}
        # A row may hold more than the view declares (the account age, for data without account dates): only
        # the view's features are written.
        self._features = {f.name for f in self._view.features}
        self._columns = tuple((f.name, f.name in self._ints) for f in self._view.features)  # (name, is Int64)
        self.view_name = view_name
        self._provider = store._get_provider()
        self._sqlite: _SqliteUpsert | None = None
        if getattr(store.config.online_store, "type", None) == "sqlite":
            # Feast's SQLite connection syncs the disk on every commit (synchronous=FULL): one write per scored
            # transaction then waits on the disk (10-25 ms on a busy shared disk here, against 0.1 ms without).
            # WAL (set on the file by the event log) + NORMAL keeps the file consistent after any crash; a power
            # cut may lose the last writes, which the features stage rebuilds from the data.
            # Its commits leave WAL checkpoints to a background thread (customer_events: the service's p99).
            from mlops_recipes.io.customer_events import checkpoint_off_the_request_path

            online_store: Any = self._provider.online_store
            connection = online_store._get_conn(store.config)
            connection.execute("PRAGMA synchronous=NORMAL")
            checkpoint_off_the_request_path(connection, Path(connection.execute("PRAGMA database_list").fetchone()[2]))
            if one_statement:
                self._sqlite = _SqliteUpsert.for_store(store, self._view, connection, self.entity_key, self._columns)

    def __call__(self, rows: Sequence[tuple[int | str, dt.datetime, dict[str, float]]]) -> None:
        """Write ``(entity key, event timestamp, {feature: value})`` rows."""
        if self._sqlite is not None:
            self._sqlite(rows)
            return
        from feast.protos.feast.types.Value_pb2 import Value

        data: list[tuple[Any, dict[str, Any], dt.datetime, dt.datetime | None]] = []
        for key, stamp, values in rows:
            protos = {
                name: Value(int64_val=int(value)) if name in self._ints else Value(double_val=float(value))
                for name, value in values.items()
                if name in self._features
            }
            data.append((self.entity_key(key), protos, stamp, None))
        # The provider is Feast's own (local provider: the configured online store); no public call skips pandas.
        self._provider.online_write_batch(self._store.config, self._view, data, progress=None)

    def entity_key(self, key: int | str) -> Any:
        """Feast's ``EntityKey`` of the view's entity for ``key``."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        key_value = Value(string_val=str(key)) if self._string_keys else Value(int64_val=int(key))
        return EntityKey(join_keys=[self._join_key], entity_values=[key_value])


_DOUBLE = struct.Struct("<d")
# Entity keys serialised by a writer, kept up to this many (then forgotten at once): one per customer scored.
_KEYS_KEPT = 100_000


def _value_bytes(value: float, *, integer: bool) -> tuple[bytes, str]:
    """Feast's serialised ``Value`` proto of ``value`` (``int64_val`` or ``double_val``) and its ``value_text``.

    The protobuf wire format written by hand (tag, then a varint or 8 little-endian bytes): ~10x faster than
    building and serialising a message, per feature per scored transaction. The parity test in
    tests/integration/test_fresh_features.py compares the bytes with Feast's own writer.
    """
    if integer:
        number = int(value)
        varint, rest = bytearray(b"\x20"), number & 0xFFFFFFFFFFFFFFFF  # int64: two's complement, 64 bits
        while rest > 0x7F:
            varint.append(rest & 0x7F | 0x80)
            rest >>= 7
        varint.append(rest)
        return bytes(varint), str(number)
    real = float(value)
    return b"\x29" + _DOUBLE.pack(real), str(real)


class _SqliteUpsert:
    """Feast's SQLite ``online_write_batch``, as one statement: the same rows, bytes and upsert, one ``execute``.

    Feast's writer runs one upsert per feature (ten per customer row). Each ``execute`` of Python's sqlite3 releases
    and re-takes the GIL, which the service's event loop is waiting for under load, so the per-transaction update
    writes its rows in one. Each entity is one tuple of bound values (its key and time once, then each feature's
    value and text) that the statement unfolds into Feast's row per feature (a join with the view's features): 22
    values a customer instead of 60, which took the statement from ~21 to ~15 µs a customer. Only for the plain
    layout (no vector or text-search columns); the rows are Feast's serialisation (entity key, ``Value`` protos,
    naive-UTC event time in epoch seconds, as its datetime adapter stores them), and
    tests/integration/test_fresh_features.py compares both writers' tables byte for byte.
    """

    _COLUMNS = ("entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts")

    def __init__(
        self, connection: Any, table: str, serialize: Callable[[int | str], bytes], columns: Sequence[tuple[str, bool]]
    ) -> None:
        """``serialize``: an entity key's bytes as Feast stores them; ``columns``: the view's (feature, is Int64)."""
        from feast.infra.online_stores.sqlite import _quote_id

        self._connection = connection
        self._serialize = serialize
        self._columns = tuple(columns)
        self._keys: dict[int | str, bytes] = {}
        width = 2 + 2 * len(self._columns)
        self._entity = "(" + ", ".join(["?"] * width) + ")"
        # SQLite's smallest default limit of bound values per statement is 32,766 (a rebuild writes thousands).
        self.entities_per_statement = max(1, 32_766 // width)
        names = ["entity_key", "event_ts", *(f"value_{i}, text_{i}" for i in range(len(self._columns)))]
        features = ", ".join(f"({i}, {_sql_text(name)})" for i, (name, _) in enumerate(self._columns))
        value, text = (
            "CASE feature.i " + " ".join(f"WHEN {i} THEN {column}_{i}" for i in range(len(self._columns))) + " END"
            for column in ("value", "text")
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in self._COLUMNS[2:])
        self._head = f"WITH entities({', '.join(names)}) AS (VALUES "
        # CROSS JOIN: SQLite keeps its left side as the outer loop, so the rows come out entity by entity, each
        # entity's features in the view's order, as Feast's writer inserts them: one entity's rows share a page or
        # two. (Unfolded feature by feature, a rebuild put each customer's ten rows on ten pages, for every later
        # lookup and update to read and write; sorting them back took the statement from 26 to 37 µs a customer.)
        # WHERE true: SQLite's parser needs it between a SELECT and ON CONFLICT.
        self._tail = (
            f"), feature(i, name) AS (VALUES {features}) "  # noqa: S608 - the view's names and Feast's table, quoted
            f"INSERT INTO {_quote_id(table)} ({', '.join(self._COLUMNS)}) "
            f"SELECT entities.entity_key, feature.name, {value}, {text}, entities.event_ts, NULL "
            "FROM entities CROSS JOIN feature WHERE true "
            f"ON CONFLICT(entity_key, feature_name) DO UPDATE SET {updates}"
        )
        self._statements: dict[int, str] = {}

    @classmethod
    def for_store(
        cls,
        store: FeatureStore,
        view: Any,
        connection: Any,
        entity_key: Callable[[int | str], Any],
        columns: Sequence[tuple[str, bool]],
    ) -> _SqliteUpsert | None:
        """The one-statement writer, or None where Feast's table has more columns than the plain layout."""
        from feast.infra.online_stores.sqlite import SqliteOnlineStore, _table_id

        config = store.config
        online = config.online_store
        plain = not getattr(online, "vector_enabled", False) and not getattr(
            online, "enable_openai_compatible_store", False
        )
        if not plain or type(store._get_provider().online_store) is not SqliteOnlineStore:
            return None
        table = _table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
        from feast.infra.key_encoding_utils import serialize_entity_key

        version = config.entity_key_serialization_version

        def serialize(key: int | str) -> bytes:
            return serialize_entity_key(entity_key(key), entity_key_serialization_version=version)

        return cls(connection, table, serialize, columns)

    def _statement(self, entities: int) -> str:
        statement = self._statements.get(entities)
        if statement is None:
            values = ", ".join([self._entity] * entities)
            statement = self._statements[entities] = f"{self._head}{values}{self._tail}"
        return statement

    def __call__(self, rows: Sequence[tuple[int | str, dt.datetime, dict[str, float]]]) -> None:
        """Upsert ``rows``: each holds every feature of the view (Int64 or else Float64), as Feast would."""
        from feast.utils import to_naive_utc

        statements = []
        for start in range(0, len(rows), self.entities_per_statement):
            chunk = rows[start : start + self.entities_per_statement]
            parameters: list[Any] = []
            for key, stamp, values in chunk:
                entity = self._keys.get(key)
                if entity is None:
                    if len(self._keys) >= _KEYS_KEPT:
                        self._keys.clear()
                    entity = self._keys[key] = self._serialize(key)
                parameters += (entity, int(to_naive_utc(stamp).timestamp()))  # as Feast's datetime adapter stores
                for name, integer in self._columns:
                    parameters += _value_bytes(values[name], integer=integer)
            statements.append((self._statement(len(chunk)), parameters))
        if statements:
            # Feast's own connection and transaction handling. The same connection as the service's lookups, on
            # purpose: a write through another connection (measured: the log's, with this file attached, to save a
            # transaction) makes SQLite drop the reading connection's page cache at its next read, which cost the
            # lookups more than the saved transaction.
            with self._connection:
                for statement, parameters in statements:
                    self._connection.execute(statement, parameters)


def _sql_text(value: str) -> str:
    """``value`` as an SQL string literal (a feature name: the view's, never a request's)."""
    return "'" + value.replace("'", "''") + "'"
