"""Feature views, one file each: adding a view is adding a module to this package.

A module of this package that defines ``VIEW = FeatureViewSpec(...)`` declares one feature view: its name (the
table ``data/features/<name>.parquet`` and the Feast view), the entity it is keyed by (a key role of the data
contract), its stored features with their types, its TTL, how it is refreshed, the function that computes its
table from the validated transactions, and ``since``: the first versioned feature service that reads it. Everything
else derives from the specs: the features stage computes and writes the tables, ``feature_repo/features.py``
declares one Feast source and view per spec and one feature service per version, and the model's stored inputs
(:mod:`mlops_recipes.core.request_features`) are the features of the service a model is trained on.

Feature services are the distinct ``since`` values, ordered by :func:`service_key` (digits compared as numbers:
``v10`` after ``v9``); a service reads every view whose ``since`` is at or before it. A view added with
``since="<model>_v2"`` therefore creates ``<model>_v2`` = the views of ``<model>_v1`` plus itself, and ``<model>_v1``
stays exactly as it was: models registered on it keep being served from it (a feature service a registered model
uses is immutable: ``io/feature_store.FeatureServiceInUse``).

Pure: the specs and the helpers here need no Feast (the Feast objects are built in ``feature_repo/``). Modules
whose name starts with ``_`` are not views (shared helpers may live there).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from mlops_recipes.contract import EVENT_TIME, ROLE_COLUMNS, Columns, Contract
from mlops_recipes.errors import ReportedError

if TYPE_CHECKING:
    import pandas as pd

    from mlops_recipes.params import FeatureParams

Dtype = Literal["int64", "float64"]
Entity = Literal["customer", "merchant"]
Refresh = Literal["daily", "per-transaction"]
# (transactions, params.features) -> the view's table: [entity key, event_timestamp, *features], one row per
# (key, time from which the values hold).
Compute = Callable[["pd.DataFrame", "FeatureParams"], "pd.DataFrame"]

# Contract roles whose column may be absent (``null`` in contract.yaml): what a feature may need.
OPTIONAL_ROLES = tuple(role for role, field in Columns.model_fields.items() if type(None) in get_args(field.annotation))
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_SERVICE = re.compile(r"^[A-Za-z0-9_]+$")  # params.features.service's pattern


class FeatureViewError(ReportedError, ValueError):
    """A feature view spec, the set of views, or a view's computed table is invalid."""


class UnknownFeatureService(FeatureViewError):
    """A feature service name that no view declares (no view's ``since`` is at or before it)."""


@dataclass(frozen=True)
class StoredFeature:
    """One stored feature of a view.

    ``model_input=False``: a value that only feeds derived features (an absolute time such as
    ``cust_last_txn_ts`` means nothing to a model). ``needs``: an optional contract role (``account_created``)
    without which the feature does not exist (left out of the view, the service and the model inputs).
    """

    name: str
    dtype: Dtype
    model_input: bool = True
    needs: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise FeatureViewError(f"feature name {self.name!r}: lower-case letters, digits and '_', from a letter")
        if self.dtype not in get_args(Dtype):
            raise FeatureViewError(f"feature {self.name}: dtype must be one of {get_args(Dtype)}, got {self.dtype!r}")
        if self.needs is not None and self.needs not in OPTIONAL_ROLES:
            raise FeatureViewError(
                f"feature {self.name}: needs must be an optional contract role {OPTIONAL_ROLES}, got {self.needs!r}"
            )


@dataclass(frozen=True)
class FeatureViewSpec:
    """A feature view, declared once: everything the features stage, Feast and the model inputs read of it."""

    name: str
    entity: Entity
    features: tuple[StoredFeature, ...]
    ttl: dt.timedelta
    refresh: Refresh
    compute: Compute
    description: str
    since: str

    def __post_init__(self) -> None:
        where = f"feature view {self.name!r}"
        if not _NAME.match(self.name):
            raise FeatureViewError(f"{where}: the name takes lower-case letters, digits and '_', from a letter")
        if self.entity not in get_args(Entity):
            raise FeatureViewError(f"{where}: entity must be one of {get_args(Entity)}, got {self.entity!r}")
        if self.refresh not in get_args(Refresh):
            raise FeatureViewError(f"{where}: refresh must be one of {get_args(Refresh)}, got {self.refresh!r}")
        if not self.features:
            raise FeatureViewError(f"{where}: declares no feature")
        repeated = sorted({name for name in self.names if self.names.count(name) > 1})
        if repeated:
            raise FeatureViewError(f"{where}: features declared twice: {repeated}")
        if self.ttl <= dt.timedelta(0):
            raise FeatureViewError(f"{where}: ttl must be positive, got {self.ttl}")
        if not _SERVICE.match(self.since):
            raise FeatureViewError(f"{where}: since must be a feature service name (letters, digits, '_')")

    @property
    def names(self) -> tuple[str, ...]:
        """Every feature's name, in declared order (whatever the contract)."""
        return tuple(feature.name for feature in self.features)

    @property
    def join_key(self) -> str:
        """The column the view is keyed by (the entity's internal column, e.g. ``customer_id``)."""
        return ROLE_COLUMNS[self.entity]


# ---------------------------------------------------------------- pure functions of spec lists


def service_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Natural sort key of a service name: runs of digits compare as numbers (``v2`` < ``v10``)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def arrange(specs: Iterable[FeatureViewSpec]) -> tuple[FeatureViewSpec, ...]:
    """The views in their one order, (``since`` in service order, name), after checking they fit together.

    The order is the stored features' order in every service and in the model's signature: a view added in a
    later service comes after the earlier ones, so a service's features start with its predecessor's.
    """
    ordered = tuple(sorted(specs, key=lambda spec: (service_key(spec.since), spec.name)))
    names = [spec.name for spec in ordered]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FeatureViewError(f"feature views declared twice: {repeated}")
    owners: dict[str, str] = {}
    for spec in ordered:
        for feature in spec.names:
            if feature in owners:
                # One namespace: Feast's lookups and the model's columns name features without their view.
                raise FeatureViewError(f"feature {feature!r} is declared by two views: {owners[feature]}, {spec.name}")
            owners[feature] = spec.name
    return ordered


def compose_services(views: Sequence[FeatureViewSpec]) -> dict[str, tuple[FeatureViewSpec, ...]]:
    """Service name -> the views it reads (in ``views``' order): every view whose ``since`` is at or before it."""
    services = sorted({view.since for view in views}, key=service_key)
    return {
        service: tuple(view for view in views if service_key(view.since) <= service_key(service))
        for service in services
    }


def view_features(view: FeatureViewSpec, contract: Contract) -> tuple[StoredFeature, ...]:
    """The view's features that the contract's data allows (those needing an absent optional role are left out)."""
    present = _present_roles(contract)
    return tuple(feature for feature in view.features if feature.needs is None or feature.needs in present)


def _present_roles(contract: Contract) -> frozenset[str]:
    return frozenset(role for role in OPTIONAL_ROLES if getattr(contract.columns, role) is not None)


# ---------------------------------------------------------------- discovery: the package's modules


def discover(package: str = __name__) -> tuple[FeatureViewSpec, ...]:
    """``VIEW`` of every module of ``package`` (its modules whose name does not start with ``_``), in name order."""
    root = importlib.import_module(package)
    found = []
    for module_info in sorted(pkgutil.iter_modules(root.__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
        view = getattr(module, "VIEW", None)
        if not isinstance(view, FeatureViewSpec):
            got = "nothing" if view is None else type(view).__name__
            raise FeatureViewError(
                f"{module.__name__} ({module.__file__}) must define VIEW = FeatureViewSpec(...), got {got}; "
                "name helper modules with a leading '_'"
            )
        found.append(view)
    return tuple(found)


@functools.cache
def feature_views() -> tuple[FeatureViewSpec, ...]:
    """Every declared feature view (this package's modules), in their one order (:func:`arrange`)."""
    views = arrange(discover())
    if not views:
        raise FeatureViewError(f"no feature view declared in {__name__}")
    return views


@functools.cache
def feature_services() -> dict[str, tuple[FeatureViewSpec, ...]]:
    """Every versioned feature service and the views it reads (:func:`compose_services` of the declared views)."""
    return compose_services(feature_views())


def forget() -> None:
    """Forget what discovery found, so that the next call imports the views again (tests that change a spec)."""
    for cached in (feature_views, feature_services, _stored, _by_entity):
        cached.cache_clear()


def service_views(service: str | None = None) -> tuple[FeatureViewSpec, ...]:
    """The views a feature service reads (``None``: every view); an undeclared name is a clear error."""
    if service is None:
        return feature_views()
    services = feature_services()
    if service not in services:
        raise UnknownFeatureService(
            f"feature service {service!r} is not declared; the declared ones are {', '.join(services)} "
            "(each is the `since` of a view in src/mlops_recipes/views/; features.service in params.yaml names one)"
        )
    return services[service]


@functools.cache
def _stored(service: str | None, present: frozenset[str]) -> tuple[StoredFeature, ...]:
    return tuple(
        feature
        for view in service_views(service)
        for feature in view.features
        if feature.needs is None or feature.needs in present
    )


def stored_features(contract: Contract, service: str | None = None) -> tuple[str, ...]:
    """Names of the stored features of ``service`` (``None``: every view) that the contract's data allows, in order."""
    return tuple(feature.name for feature in _stored(service, _present_roles(contract)))


def stored_model_inputs(contract: Contract, service: str | None = None) -> tuple[str, ...]:
    """:func:`stored_features` that are model inputs (``model_input``), in order."""
    return tuple(feature.name for feature in _stored(service, _present_roles(contract)) if feature.model_input)


@functools.cache
def _by_entity(service: str | None, present: frozenset[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for view in service_views(service):
        names = tuple(f.name for f in view.features if f.needs is None or f.needs in present)
        out[view.entity] = out.get(view.entity, ()) + names
    return out


def entity_features(contract: Contract, service: str | None = None) -> dict[str, tuple[str, ...]]:
    """Entity (``customer``, ``merchant``) -> the stored features of the service's views keyed by it."""
    return _by_entity(service, _present_roles(contract))


def compute_table(
    view: FeatureViewSpec, transactions: pd.DataFrame, params: FeatureParams, contract: Contract
) -> pd.DataFrame:
    """The view's table from the validated transactions, checked against its spec (columns, order, types)."""
    table = view.compute(transactions, params)
    features = view_features(view, contract)
    expected = [view.join_key, EVENT_TIME, *(feature.name for feature in features)]
    if list(table.columns) != expected:
        raise FeatureViewError(
            f"feature view {view.name!r}: compute returned the columns {list(table.columns)}, its spec declares "
            f"{expected} (entity key, {EVENT_TIME}, then the features in declared order)"
        )
    wrong = {
        feature.name: str(table[feature.name].dtype)
        for feature in features
        if str(table[feature.name].dtype) != feature.dtype
    }
    if table[EVENT_TIME].dtype.kind != "M" or getattr(table[EVENT_TIME].dtype, "tz", None) is None:
        wrong[EVENT_TIME] = f"{table[EVENT_TIME].dtype} (a tz-aware timestamp is needed)"
    if wrong:
        declared = {feature.name: feature.dtype for feature in features if feature.name in wrong}
        raise FeatureViewError(f"feature view {view.name!r}: columns of another type than declared {declared}: {wrong}")
    return table
