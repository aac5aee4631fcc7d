"""The Feast adapter against a real local store: point-in-time joins, TTLs, materialization, apply.

One store per module (``import feast`` alone costs seconds): the project's ``feature_repo/`` copied into a
temporary project root, with tiny hand-built feature tables whose every row is identifiable by its values.
SQLite online store, DuckDB offline store and a file registry, exactly as ``feature_store.yaml`` configures.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_recipes.core.request_features import STORED_FEATURES
from mlops_recipes.settings import Settings
from mlops_recipes.views.customer_stats import VIEW as CUSTOMER_VIEW
from mlops_recipes.views.merchant_stats import VIEW as MERCHANT_VIEW

pytestmark = pytest.mark.integration

CUSTOMER_FEATURES = CUSTOMER_VIEW.names
MERCHANT_FEATURES = MERCHANT_VIEW.names

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = "fraud_model_v1"

# Every transaction is scored at T (noon); merchant rows are daily, stamped at midnight.
T = pd.Timestamp("2024-03-10 12:00", tz="UTC")
DAY = T.floor("D")
HOUR = pd.Timedelta(hours=1)
CREATED = T - pd.Timedelta(days=400)

# Customers: 1 has rows before, exactly at and after T; 2 has none; 3 only one older than the 30-day TTL;
# 4 only one inside it. Each row is tagged by a number ``k`` that every one of its values encodes.
CUSTOMER_ROWS = [
    (1, T - HOUR, 1),
    (1, T, 2),  # the state *after* a transaction at T: must not be visible when scoring it
    (1, T + HOUR, 3),
    (3, T - pd.Timedelta(days=40), 4),
    (4, T - pd.Timedelta(days=29), 5),
]
# Merchants: 1 has daily rows for D-1, D and D+1; 2 only one older than the 2-day TTL.
MERCHANT_ROWS = [
    (1, DAY - pd.Timedelta(days=1), 1),
    (1, DAY, 2),
    (1, DAY + pd.Timedelta(days=1), 3),
    (2, DAY - pd.Timedelta(days=3), 4),
]
# (transaction_id, customer, merchant, time). Ids out of order: the output must still map rows correctly.
TRANSACTIONS = [
    (16, 1, 1, T),  # customer row k=1 (before T), merchant row k=2 (day D)
    (12, 2, 1, T),  # no customer row at all
    (13, 3, 1, T),  # customer row older than the TTL
    (14, 4, 2, T),  # customer row inside the TTL; merchant row older than its TTL
    (15, 1, 1, T + 2 * HOUR),  # latest customer row k=3
    (11, 1, 1, T + 2 * HOUR),  # same customer and instant as 15: both rows must come out
]

CUSTOMER_VIEW_FEATURES = [f for f in CUSTOMER_FEATURES if f not in {"cust_last_txn_ts", "cust_account_created_ts"}]


def _dtype(feature: str) -> str:
    return "int64" if "_txn_count_" in feature else "float64"


def _value(feature: str, features: tuple[str, ...], k: int) -> float:
    """A value unique to (row k, feature), an integer so it survives the Int64 columns."""
    return float(k * 1000 + features.index(feature))


def customer_row(customer_id: int, stamp: pd.Timestamp, k: int) -> dict[str, Any]:
    row: dict[str, Any] = {"customer_id": customer_id, "event_timestamp": stamp}
    row |= {f: _value(f, CUSTOMER_FEATURES, k) for f in CUSTOMER_FEATURES}
    row["cust_last_txn_ts"] = stamp.timestamp()
    row["cust_account_created_ts"] = CREATED.timestamp()
    return row


def merchant_row(merchant_id: int, stamp: pd.Timestamp, k: int) -> dict[str, Any]:
    return {"merchant_id": merchant_id, "event_timestamp": stamp} | {
        f: _value(f, MERCHANT_FEATURES, k) for f in MERCHANT_FEATURES
    }


def table(rows: list[dict[str, Any]], key: str, features: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame[key] = frame[key].astype("int64")
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return frame.astype({f: _dtype(f) for f in features})


def transactions() -> pd.DataFrame:
    frame = pd.DataFrame(TRANSACTIONS, columns=["transaction_id", "customer_id", "merchant_id", "event_timestamp"])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    frame["amount"] = np.linspace(10.0, 60.0, len(frame))
    frame["channel"] = ["pos", "online", "atm"] * (len(frame) // 3)
    frame["is_fraud"] = [0, 1] * (len(frame) // 2)
    return frame


@dataclass
class Store:
    settings: Settings
    store: Any
    definitions: Any
    first_apply: dict[str, list[str]]
    customers: pd.DataFrame
    merchants: pd.DataFrame
    transactions: pd.DataFrame
    training: pd.DataFrame


@pytest.fixture(scope="module")
def feast_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    from mlops_recipes.io import feature_store
    from mlops_recipes.model_inputs import training_rows

    root = tmp_path_factory.mktemp("feast")
    shutil.copytree(REPO_ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO_ROOT / "contract.yaml", root / "contract.yaml")  # the definitions read the (demo) contract
    customers = table([customer_row(*r) for r in CUSTOMER_ROWS], "customer_id", CUSTOMER_FEATURES)
    merchants = table([merchant_row(*r) for r in MERCHANT_ROWS], "merchant_id", MERCHANT_FEATURES)
    tables = root / "data" / "features"
    tables.mkdir(parents=True)
    customers.to_parquet(tables / "customer_stats.parquet", index=False)
    merchants.to_parquet(tables / "merchant_stats.parquet", index=False)

    with pytest.MonkeyPatch.context() as env:
        # The definitions and Settings read MLOPS_DATA_DIR, FEAST_CONFIG, ...: use the defaults only.
        for name in [n for n in os.environ if n.startswith(("MLOPS_", "FEAST_"))]:
            env.delenv(name)
        settings = Settings(project_root=root)
        store = feature_store.open_store(settings)
        definitions = feature_store.load_definitions(settings.feature_repo_path)
        first_apply = feature_store.apply_definitions(store, definitions)
        feature_store.materialize(
            store,
            start=min(customers["event_timestamp"].min(), merchants["event_timestamp"].min()).to_pydatetime(),
            end=(max(customers["event_timestamp"].max(), merchants["event_timestamp"].max()) + HOUR).to_pydatetime(),
        )
        events = transactions()
        training = training_rows(store, events, SERVICE, settings.contract())
        yield Store(settings, store, definitions, first_apply, customers, merchants, events, training)


def joined(fs: Store, transaction_id: int) -> pd.Series:
    rows = fs.training.loc[fs.training["transaction_id"] == transaction_id]
    assert len(rows) == 1, f"transaction {transaction_id} appears {len(rows)} times in the training frame"
    row: pd.Series = rows.iloc[0]
    return row


def assert_customer_row(row: pd.Series, k: int) -> None:
    for feature in CUSTOMER_VIEW_FEATURES:
        assert row[feature] == _value(feature, CUSTOMER_FEATURES, k), feature


def assert_merchant_row(row: pd.Series, k: int) -> None:
    for feature in MERCHANT_FEATURES:
        assert row[feature] == _value(feature, MERCHANT_FEATURES, k), feature


def test_first_apply_registers_every_definition(feast_store: Store) -> None:
    assert feast_store.first_apply["deleted"] == []
    assert {"customer", "merchant", "customer_stats", "merchant_stats", SERVICE} <= set(
        feast_store.first_apply["applied"]
    )


def test_join_sees_only_the_row_before_the_transaction(feast_store: Store) -> None:
    row = joined(feast_store, 16)

    # Rows stamped at T (state after this very transaction) and after T must not leak in.
    assert_customer_row(row, 1)
    # The derived feature is computed from the earlier row's last-transaction time: one hour before.
    assert row["log_seconds_since_last_txn"] == pytest.approx(math.log1p(HOUR.total_seconds()))
    assert row["account_age_days"] == pytest.approx((T - CREATED).total_seconds() / 86_400)


def test_later_transaction_sees_the_latest_row(feast_store: Store) -> None:
    for transaction_id in (15, 11):
        row = joined(feast_store, transaction_id)
        assert_customer_row(row, 3)
        assert row["log_seconds_since_last_txn"] == pytest.approx(math.log1p(HOUR.total_seconds()))


def test_one_row_per_transaction_in_order_with_original_times(feast_store: Store) -> None:
    training, events = feast_store.training, feast_store.transactions

    assert len(training) == len(events)
    assert training["transaction_id"].tolist() == sorted(events["transaction_id"])
    expected = events.set_index("transaction_id").loc[training["transaction_id"]]
    # The lookup offset is undone: rows carry the transaction's own time, customer, merchant and label.
    assert training["event_timestamp"].tolist() == expected["event_timestamp"].tolist()
    assert training["customer_id"].tolist() == expected["customer_id"].tolist()
    assert training["merchant_id"].tolist() == expected["merchant_id"].tolist()
    assert training["amount"].tolist() == expected["amount"].tolist()
    assert training["is_fraud"].tolist() == expected["is_fraud"].tolist()


def test_chunked_join_gives_the_same_frame_as_one_join(feast_store: Store) -> None:
    from mlops_recipes.io import feature_store

    events = feast_store.transactions.assign(
        event_timestamp=feast_store.transactions["event_timestamp"] - pd.Timedelta(microseconds=1)
    )
    whole = feature_store.historical_features(feast_store.store, events, SERVICE, chunk_rows=len(events))
    chunked = feature_store.historical_features(feast_store.store, events, SERVICE, chunk_rows=2)

    def canonical(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values("transaction_id").reset_index(drop=True)[sorted(frame.columns)]

    pd.testing.assert_frame_equal(canonical(chunked), canonical(whole))


def test_customer_without_feature_rows_is_kept_with_missing_values(feast_store: Store) -> None:
    row = joined(feast_store, 12)

    assert row[CUSTOMER_VIEW_FEATURES].isna().all()
    assert math.isnan(row["log_seconds_since_last_txn"])
    # Request fields and the merchant's features are still there.
    assert row["amount"] == feast_store.transactions.set_index("transaction_id").loc[12, "amount"]
    assert_merchant_row(row, 2)


def test_customer_ttl_hides_stale_rows_but_not_recent_ones(feast_store: Store) -> None:
    stale = joined(feast_store, 13)  # only row 40 days old; the view's TTL is 30 days
    assert stale[CUSTOMER_VIEW_FEATURES].isna().all()

    recent = joined(feast_store, 14)  # only row 29 days old
    assert_customer_row(recent, 5)


def test_merchant_daily_row_is_the_one_stamped_at_midnight_of_the_same_day(feast_store: Store) -> None:
    row = joined(feast_store, 16)  # day D at noon: rows for D-1, D and D+1 exist
    assert_merchant_row(row, 2)


def test_merchant_ttl_hides_a_batch_that_stopped(feast_store: Store) -> None:
    row = joined(feast_store, 14)  # merchant 2's only row is 3.5 days old; the TTL is 2 days
    assert row[list(MERCHANT_FEATURES)].isna().all()


def test_online_store_serves_the_latest_row_per_entity(feast_store: Store) -> None:
    from mlops_recipes.io import feature_store

    rows = [{"customer_id": 1, "merchant_id": 1}, {"customer_id": 4, "merchant_id": 1}]
    online = feature_store.online_features(feast_store.store, rows, SERVICE)

    for feature in CUSTOMER_FEATURES:
        if feature in {"cust_last_txn_ts", "cust_account_created_ts"}:
            continue
        assert online[feature] == [_value(feature, CUSTOMER_FEATURES, 3), _value(feature, CUSTOMER_FEATURES, 5)]
    assert online["cust_last_txn_ts"] == pytest.approx(
        [(T + HOUR).timestamp(), (T - pd.Timedelta(days=29)).timestamp()]
    )
    for feature in MERCHANT_FEATURES:
        assert online[feature] == [_value(feature, MERCHANT_FEATURES, 3)] * 2


def test_online_lookup_of_unknown_entities_returns_none(feast_store: Store) -> None:
    from mlops_recipes.io import feature_store

    rows = [{"customer_id": 999_999, "merchant_id": 999_999}, {"customer_id": 1, "merchant_id": 1}]
    online = feature_store.online_features(feast_store.store, rows, SERVICE)

    for feature in STORED_FEATURES:
        assert online[feature][0] is None, feature
        assert online[feature][1] is not None, feature


def test_apply_is_idempotent(feast_store: Store) -> None:
    from mlops_recipes.io import feature_store

    store = feast_store.store
    before = {
        "services": sorted(s.name for s in store.list_feature_services()),
        "views": sorted(v.name for v in store.list_feature_views()),
    }
    again = feature_store.apply_definitions(store, feast_store.definitions)

    assert again["deleted"] == []
    assert again["applied"] == feast_store.first_apply["applied"]
    assert sorted(s.name for s in store.list_feature_services()) == before["services"]
    assert sorted(v.name for v in store.list_feature_views()) == before["views"]


EXTRA_SERVICE = """
# Imported after features.py (files load in name order), so its feature view is already defined.
from feast import FeatureService

from _feature_repo_features import customer_stats_fv

fraud_model_extra = FeatureService(name="fraud_model_extra", features=[customer_stats_fv])
"""


def test_apply_deletes_a_feature_service_no_longer_declared(feast_store: Store) -> None:
    from mlops_recipes.io import feature_store

    store, repo = feast_store.store, feast_store.settings.feature_repo_path
    extra = repo / "zz_extra_service.py"
    extra.write_text(EXTRA_SERVICE)
    try:
        added = feature_store.apply_definitions(store, feature_store.load_definitions(repo))
        assert "fraud_model_extra" in added["applied"]
        assert "fraud_model_extra" in {s.name for s in store.list_feature_services()}
    finally:
        extra.unlink()

    removed = feature_store.apply_definitions(store, feature_store.load_definitions(repo))

    assert removed["deleted"] == ["fraud_model_extra"]
    services = {s.name for s in store.list_feature_services()}
    assert "fraud_model_extra" not in services
    assert SERVICE in services
    # The views the removed service used are still declared, so they stay.
    assert {v.name for v in store.list_feature_views()} >= {"customer_stats", "merchant_stats"}


def test_unknown_feature_service_is_a_clear_error(feast_store: Store) -> None:
    from mlops_recipes.io.feature_store import FeatureStoreError, feature_references

    with pytest.raises(FeatureStoreError, match="'nope'"):
        feature_references(feast_store.store, "nope")


def test_open_store_without_configuration_is_a_clear_error(
    feast_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_recipes.io.feature_store import FeatureStoreError, open_store

    monkeypatch.delenv("FEAST_CONFIG", raising=False)
    monkeypatch.delenv("MLOPS_FEAST_CONFIG", raising=False)
    with pytest.raises(FeatureStoreError, match=re.escape(str(tmp_path / "feature_repo" / "feature_store.yaml"))):
        open_store(Settings(project_root=tmp_path))

    # A configuration named through the environment (the scaled profile's switch) that does not exist.
    (tmp_path / "feature_repo").mkdir()
    shutil.copy2(feast_store.settings.feature_repo_path / "feature_store.yaml", tmp_path / "feature_repo")
    monkeypatch.setenv("FEAST_CONFIG", "feature_store.missing.yaml")
    missing = tmp_path / "feature_repo" / "feature_store.missing.yaml"
    with pytest.raises(FeatureStoreError, match=re.escape(str(missing))):
        open_store(Settings(project_root=tmp_path))


def test_feature_service_is_exactly_the_stored_features_contract(feast_store: Store) -> None:
    from mlops_recipes.io.feature_store import feature_references

    references = feature_references(feast_store.store, SERVICE)
    names = [reference.split(":", 1)[1] for reference in references]

    assert len(names) == len(set(names))
    assert set(names) == set(STORED_FEATURES)
    assert {reference.split(":", 1)[0] for reference in references} == {"customer_stats", "merchant_stats"}


def test_apply_refuses_to_change_a_feature_service_a_registered_model_uses(
    feast_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    from mlflow import MlflowClient

    from mlops_recipes.io import feature_store, registry

    # A real registry (SQLite): v2 is champion and replaced v1 (the rollback target), both on the service.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("fraud-detector")
    (tmp_path / "model").mkdir()
    for _ in range(2):
        client.create_model_version("fraud-detector", str(tmp_path / "model"), tags={"feature_service": SERVICE})
    client.set_model_version_tag("fraud-detector", "2", registry.PREVIOUS_CHAMPION_TAG, "1")
    client.set_registered_model_alias("fraud-detector", registry.CHAMPION, "2")

    def users() -> dict[str, list[str]]:
        return registry.services_in_use(client, "fraud-detector")

    store, repo = feast_store.store, feast_store.settings.feature_repo_path
    assert users() == {SERVICE: ["champion v2", "rollback target v1"]}
    # Unchanged definitions apply (and never ask the model registry).
    feature_store.apply_definitions(store, feast_store.definitions, users=lambda: pytest.fail("asked"))

    # The customer view's file changes its TTL (the spec is read by feature_repo/features.py at import).
    from mlops_recipes import views
    from mlops_recipes.views import customer_stats

    original = customer_stats.VIEW
    assert original.ttl == dt.timedelta(days=30)
    monkeypatch.setattr(customer_stats, "VIEW", dataclasses.replace(original, ttl=dt.timedelta(days=31)))
    views.forget()
    try:
        longer_ttl = feature_store.load_definitions(repo)
        with pytest.raises(feature_store.FeatureServiceInUse) as refused:
            feature_store.apply_definitions(store, longer_ttl, users=users)
        message = str(refused.value)
        assert f"'{SERVICE}' (used by champion v2, rollback target v1)" in message
        assert "ttl 30 days, 0:00:00" in message
        assert "ttl 31 days, 0:00:00" in message
        assert "publish a new versioned service" in message
        # Nothing was applied.
        registered = store.registry.get_feature_view("customer_stats", store.project, allow_cache=False)
        assert registered.ttl == dt.timedelta(days=30)
        # Once no model uses the service, the same change applies.
        feature_store.apply_definitions(store, longer_ttl, users=dict)
        registered = store.registry.get_feature_view("customer_stats", store.project, allow_cache=False)
        assert registered.ttl == dt.timedelta(days=31)
    finally:
        monkeypatch.undo()
        views.forget()
        feature_store.apply_definitions(store, feature_store.load_definitions(repo))
    # Removing the service in use is refused as well.
    without = feature_store.Definitions(
        entities=feast_store.definitions.entities,
        data_sources=feast_store.definitions.data_sources,
        feature_views=feast_store.definitions.feature_views,
        feature_services=[],
    )
    with pytest.raises(feature_store.FeatureServiceInUse, match="no longer declared"):
        feature_store.apply_definitions(store, without, users=users)
    assert SERVICE in {s.name for s in store.list_feature_services()}
