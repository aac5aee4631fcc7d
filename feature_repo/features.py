"""Feast definitions for fraud detection: entities, and one source and feature view per declared view, and the
versioned feature services.

The feature views are declared in ``src/mlops_recipes/views/``, one file each (name, entity, features and types,
TTL, refresh, computation, and ``since``: the first feature service that reads the view); this file turns every
spec into Feast objects and publishes no view of its own. Adding a view is adding a file there.

The feature service is the contract between training and serving: the training set is built from it with
``get_historical_features`` (point in time), the online service reads the same one with
``get_online_features``, and its name is tagged on every MLflow model version. Change a feature → add a view with
a new ``since`` (``fraud_model_v2``: the views of v1 plus the new one, v1 unchanged) and point
``features.service`` in ``params.yaml`` at it.

The tables behind the sources are computed by each view's ``compute`` in the ``features`` stage and written under
``$MLOPS_DATA_DIR/features`` (default ``data/features`` in the project root, as in ``mlops_recipes.settings``).
Source paths are resolved here because the DuckDB offline store reads them relative to the working directory, not
to this folder.

The entities' key types and the views' fields follow the data contract (``contract.yaml`` in the project root, or
``$MLOPS_CONTRACT_FILE``): string or integer keys, and no account-creation feature when the data has no
account-creation date.
"""

import os
import re
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

from mlops_recipes.contract import CUSTOMER, EVENT_TIME, MERCHANT, load_contract
from mlops_recipes.views import FeatureViewSpec, feature_services, feature_views, view_features

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
FEATURE_TABLES = _PROJECT_ROOT / os.environ.get("MLOPS_DATA_DIR", "data") / "features"
CONTRACT = load_contract(_PROJECT_ROOT / os.environ.get("MLOPS_CONTRACT_FILE", "contract.yaml"))
_KEY_TYPES = {"int": ValueType.INT64, "string": ValueType.STRING}
_DTYPES = {"int64": Int64, "float64": Float64}

# A cardholder; the key every customer feature is looked up by.
customer = Entity(
    name="customer",
    join_keys=[CUSTOMER],
    value_type=_KEY_TYPES[CONTRACT.id_type(CUSTOMER)],
    description="A card holder.",
)

# A merchant accepting card payments.
merchant = Entity(
    name="merchant",
    join_keys=[MERCHANT],
    value_type=_KEY_TYPES[CONTRACT.id_type(MERCHANT)],
    description="A merchant accepting card payments.",
)

_ENTITIES = {"customer": customer, "merchant": merchant}


def _feature_view(spec: FeatureViewSpec) -> FeatureView:
    """The spec's Parquet source and online view (the TTL, the fields the contract allows, the refresh tag)."""
    source = FileSource(
        name=f"{spec.name}_source",
        path=str(FEATURE_TABLES / f"{spec.name}.parquet"),
        timestamp_field=EVENT_TIME,
    )
    return FeatureView(
        name=spec.name,
        entities=[_ENTITIES[spec.entity]],
        ttl=spec.ttl,
        schema=[Field(name=feature.name, dtype=_DTYPES[feature.dtype]) for feature in view_features(spec, CONTRACT)],
        online=True,
        source=source,
        # refresh: `daily` views are materialized in batch; a `per-transaction` one is updated by the service.
        tags={"team": "fraud", "refresh": spec.refresh},
    )


def _service_description(name: str) -> str:
    version = re.search(r"_v(\d+)$", name)
    return f"Features of the card-fraud model, {f'version {version.group(1)}' if version else name}."


_VIEWS = {spec.name: _feature_view(spec) for spec in feature_views()}

# Feast objects must be module-level globals: io/feature_store.load_definitions and Feast's own CLI (`feast apply`)
# collect the module's globals, so every view is published under the names a hand-written file would use
# (`<view>_source`, `<view>_fv`) and every service under its own name (e.g. fraud_model_v1: every stored feature a
# model trained on it reads).
for _name, _view in _VIEWS.items():
    globals()[f"{_name}_source"] = _view.batch_source
    globals()[f"{_name}_fv"] = _view
for _name, _specs in feature_services().items():
    globals()[_name] = FeatureService(
        name=_name,
        features=[_VIEWS[spec.name] for spec in _specs],
        description=_service_description(_name),
    )
del _name, _view, _specs
